"""The locks pin every dependency with hashes, agree with the files people edit, and are what gets installed.

requirements.txt / requirements-dev.txt are edited by hand; `make lock` derives requirements.lock (the image)
and requirements-dev.lock (`make install`) from them. A lock older than its input fails here with that advice.
"""

from __future__ import annotations

import re
from pathlib import Path

from deploy.tests.conftest import ROOT

STALE = "is stale: run `make lock` after editing requirements*.txt"


def _name(raw: str) -> str:
    return re.sub(r"[-_.]+", "-", raw.split("[")[0]).lower()


def pins(path: Path) -> dict[str, str]:
    """``name == version`` of every requirement line of ``path`` (continuations and comments skipped)."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._\-\[\],]*)==([^\s;\\]+)", line)
        if match:
            found[_name(match.group(1))] = match.group(2)
    return found


def hashed_entries(path: Path) -> dict[str, int]:
    """Number of ``--hash=sha256:`` of each locked package."""
    counts: dict[str, int] = {}
    current = None
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._\-]*)==", line)
        if match:
            current = _name(match.group(1))
            counts[current] = 0
        elif current and re.match(r"^\s+--hash=sha256:[0-9a-f]{64}", line):
            counts[current] += 1
    return counts


def test_pins_reads_names_extras_and_versions(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("# c\n-r other.txt\npsycopg[binary,pool]==3.3.9\nDjango_Rest==1.0 \\\n    --hash=sha256:ab\n")
    assert pins(path) == {"psycopg": "3.3.9", "django-rest": "1.0"}


def test_every_locked_package_has_hashes_and_every_direct_pin_is_locked_at_its_version():
    for source, lock in (("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")):
        locked = pins(ROOT / lock)
        hashes = hashed_entries(ROOT / lock)
        assert locked and set(hashes) == set(locked)
        assert all(count > 0 for count in hashes.values()), f"{lock}: entries without hashes"
        for name, version in pins(ROOT / source).items():
            assert locked.get(name) == version, f"{lock} {STALE} ({name}=={version} in {source})"


def test_the_dev_lock_holds_the_images_versions():
    runtime, dev = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-dev.lock")
    differ = {name: (version, dev.get(name)) for name, version in runtime.items() if dev.get(name) != version}
    assert not differ, f"requirements-dev.lock {STALE}: {differ}"


def test_make_install_installs_the_dev_lock_with_hashes_required():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"pip install .*--require-hashes -r requirements-dev\.lock", makefile)
    assert re.search(r"^lock:", makefile, re.MULTILINE)
