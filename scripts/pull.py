"""Use the published results without training: pull what the DVC store holds, rebuild what is never pushed.

    python scripts/pull.py [-r REMOTE]        (make pull; default: the project's default remote)

1. The stages whose outputs are never pushed (push: false in dvc.yaml: the licensed data, the K-shot
   draws, the base model) are rebuilt with `dvc repro`: they are cheap and deterministic, and the lock
   pins their hashes.
2. Every other output the lock pins is fetched from the store, one output at a time, so an object the
   store lacks (or one whose bytes do not hash to its name: the remote verifies) is one line naming the
   output; then checked out.
3. Every pulled file is hashed here, independently of DVC's own bookkeeping, against dvc.lock.
4. `dvc status` must show nothing to run. Exit 1 on any missing, refused or differing output.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from dvc_cache import object_path, read_manifest

CACHE = Path(".dvc/cache")


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def dvc(*args: str, quiet: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], capture_output=quiet, text=True)


def plan(lock: dict) -> tuple[list[str], dict[str, str]]:
    """(the stages to rebuild: those with a push: false output, {path: md5} of every other cached output
    of the pipeline's stages). Uncached outputs (metrics, plots, reports) are in git; a lock entry of a
    stage dvc.yaml no longer has is not pulled."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        stages = [s for s in repo.index.stages if s.addressing in lock["stages"]]
        rebuild = [s.addressing for s in stages if any(not o.can_push for o in s.outs)]
        cached = {str(o.def_path) for s in stages if s.addressing not in rebuild for o in s.outs if o.use_cache}
    md5s = {o["path"]: o["md5"] for s in stages for o in lock["stages"][s.addressing].get("outs", [])}
    return rebuild, {path: md5s[path] for path in sorted(cached)}


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def differing(path: Path, md5: str) -> list[str]:
    """The files of one output whose bytes do not hash to what dvc.lock pins ([] when all agree)."""
    if not md5.endswith(".dir"):
        return [] if path.is_file() and md5_of(path) == md5 else [str(path)]
    manifest = object_path(CACHE, md5)
    if not manifest.is_file() or md5_of(manifest) != md5.removesuffix(".dir"):
        return [f"{path}/ (its file list)"]
    entries = read_manifest(manifest)
    bad = [name for name, want in entries.items() if not (path / name).is_file() or md5_of(path / name) != want]
    extra = {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()} - entries.keys()
    return [f"{path}/{name}" for name in sorted(bad) + sorted(extra)]


def discard(path: Path, md5: str) -> None:
    """Remove an output whose pulled bytes are not the lock's, and their cache objects: nothing stays
    under a good name that `dvc status` would then call up to date."""
    objects = [md5]
    if md5.endswith(".dir") and object_path(CACHE, md5).is_file():
        objects += list(read_manifest(object_path(CACHE, md5)).values())
    for obj in objects:
        object_path(CACHE, obj).unlink(missing_ok=True)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-r", "--remote", help="the DVC remote to pull from (default: the project's default)")
    args = ap.parse_args()
    lock = yaml.safe_load(Path("dvc.lock").read_text())
    rebuild, outputs = plan(lock)
    say(f"rebuilding what is never pushed: {', '.join(rebuild)}")
    if dvc("repro", *rebuild).returncode != 0:
        say("error: `dvc repro` of the never-pushed stages failed")
        return 1
    remote = ["-r", args.remote] if args.remote else []
    problems = []
    for path, md5 in outputs.items():
        if not differing(Path(path), md5):
            continue  # already here, as the lock pins it
        fetched = dvc("fetch", *remote, path, quiet=True)
        if fetched.returncode != 0:
            why = (
                "refused: its bytes do not match their hash"
                if "verif" in fetched.stderr.lower()
                or "mismatch" in fetched.stderr.lower()
                or "corrupt" in fetched.stderr.lower()
                else "not in the store"
            )
            problems.append(f"{path}: {why} ({md5})")
            continue
        if dvc("checkout", "--force", path, quiet=True).returncode != 0:
            problems.append(f"{path}: fetched but could not be checked out")
            continue
        bad = differing(Path(path), md5)
        if bad:
            discard(Path(path), md5)
            problems.append(f"{path}: refused: pulled files differ from dvc.lock ({', '.join(bad[:5])}); removed")
    for line in problems:
        say(f"error: {line}")
    status = dvc("status", quiet=True)
    clean = status.returncode == 0 and "up to date" in status.stdout
    if not clean and not problems:
        say(f"error: `dvc status` still lists work to do:\n{status.stdout.strip()}")
    if problems or not clean:
        return 1
    print(f"pulled and checked {len(outputs)} outputs, rebuilt {len(rebuild)} stages: `dvc status` is up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
