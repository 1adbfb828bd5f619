#!/usr/bin/env bash
# Runs checkov on deploy/ from its own virtualenv (.venv-tools/), created on first use and reused while
# deploy/tools/requirements-checkov.txt is unchanged. Independent of the Makefile so CI, developers and the
# test in deploy/tests/ all get the same pinned checkov. Arguments are passed to checkov.
#   deploy/tools/checkov.sh --install-only     # just build the virtualenv
#   deploy/tools/checkov.sh -d deploy --config-file deploy/checkov.yaml
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${CHECKOV_VENV:-$root/.venv-tools}"
reqs="$root/deploy/tools/requirements-checkov.txt"
stamp="$venv/.checkov-stamp"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/checkov" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing checkov into $venv" >&2
  "$python" -m venv "$venv"
  # The virtualenv ignores itself, so no `git add -A` can pick it up.
  echo '*' > "$venv/.gitignore"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs" > "$venv/install.log" 2>&1; then
    cat "$venv/install.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi
cd "$root"
# No telemetry, no platform look-ups: the scan is offline.
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
exec "$venv/bin/checkov" "$@"
