"""The repository's own docs (docs/): every reference to them in code, tests, manifests and READMEs resolves
to a file in the repository, and every section or convention it cites exists there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("DESIGN", "STYLE", "CHAINCODE", "FABRIC_GATEWAY")
# A reference: an optional path, the doc's name; then maybe "§3", "§4–5", "§2 and §3", "§7b", "convention 11",
# "conventions 1–2".
REFERENCE = re.compile(
    r"(?<![\w/.-])(?P<path>(?:[\w.-]+/)*(?:" + "|".join(DOCS) + r")\.md)"
    r"(?P<tail>(?:,? (?:§\d+[a-z]?(?:[–-]\d+)?(?:(?: and |, )§\d+[a-z]?)*|conventions? \d+(?:[–-]\d+)?))?)"
)


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    files = []
    for name in names:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".png", ".sqlite3", ".pyc"}:
            continue
        try:
            files.append((path, path.read_text()))
        except UnicodeDecodeError:
            continue
    return files


def resolve(source: Path, reference: str) -> Path | None:
    for base in (ROOT, source.parent):
        candidate = (base / reference).resolve()
        if candidate.is_file() and ROOT in candidate.parents:
            return candidate
    return None


def cited_numbers(tail: str) -> list[str]:
    numbers = []
    for first, last in re.findall(r"(\d+[a-z]?)(?:[–-](\d+))?", tail):
        numbers.append(first)
        if last:
            numbers.extend(str(n) for n in range(int(re.match(r"\d+", first).group()) + 1, int(last) + 1))
    return numbers


def test_every_reference_to_the_docs_resolves_to_a_file_and_a_section_that_exist():
    checked, broken = 0, []
    for path, text in tracked_text_files():
        for match in REFERENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{path.relative_to(ROOT)}:{line}: {match.group(0)}"
            target = resolve(path, match.group("path"))
            if target is None:
                broken.append(f"{where} (no such file from the repository root or {path.parent.name}/)")
                continue
            checked += 1
            doc = target.read_text()
            tail = match.group("tail")
            for number in cited_numbers(tail):
                if "§" in tail:
                    found = re.search(rf"^#+ {re.escape(number)}\.", doc, re.M)
                else:
                    found = re.search(rf"^{re.escape(number)}\. ", doc, re.M)
                if not found:
                    broken.append(f"{where} (no section or convention {number} in {target.relative_to(ROOT)})")
    assert not broken, "broken references to the docs:\n" + "\n".join(broken)
    assert checked >= 50  # the code really cites them; a pattern that matches nothing would prove nothing


def test_the_docs_are_in_the_repository_and_the_readme_links_them():
    readme = (ROOT / "README.md").read_text()
    for name in DOCS:
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
        assert f"(docs/{name}.md)" in readme, f"README.md should link docs/{name}.md"


def test_the_reference_pattern_rejects_what_does_not_resolve(tmp_path):
    """The check above can fail: a bare name outside docs/ or a missing section is reported."""
    source, design_md = ROOT / "identity" / "models.py", "DESIGN" + ".md"  # split: this file is scanned too
    assert resolve(source, design_md) is None
    assert resolve(source, f"docs/{design_md}") is not None
    match = REFERENCE.search("as docs/FABRIC_GATEWAY.md §4–5 and docs/STYLE.md conventions 1–2 say")
    assert match.group("path") == "docs/FABRIC_GATEWAY.md" and cited_numbers(match.group("tail")) == ["4", "5"]
    design = (ROOT / "docs" / design_md).read_text()
    assert not re.search(r"^#+ 42\.", design, re.M)
