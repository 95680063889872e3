"""Rebuild the committed pipeline from clean in a scratch clone and check every output against dvc.lock.

    python scripts/verify.py [--fast] [--keep] [--rev REV]      (make verify / make verify-fast)

The scratch clone sits beside this checkout (so `../shared` is beside it too), with an empty DVC cache
and run-cache: every stage runs. Then, per stage, each output's hash in the clone's new lock is compared
with the committed lock's; for a folder that differs, the files that differ are named when the committed
folder's manifest is in this checkout's cache or the published store. Exit 1 on any difference.

--fast runs only the cheap stages (data, K-shot draws, text tables, ID baselines, base model, stage-1
tuning, references): a new CPU kind checked in minutes. The machine's CPU flags head the output.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from dvc_cache import manifest  # noqa: E402
from tallrec.numerics import REPORTED_FLAGS, reported_flags  # noqa: E402  (imports nothing heavy)

FAST_STAGES = ("fetch", "prepare", "sample", "text_embed", "baselines", "base_model", "alpaca_tune", "references")
console = Console(stderr=True)


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def lock_outputs(lock: dict) -> dict[str, dict[str, str]]:
    """stage -> {output path: md5} of a parsed dvc.lock."""
    return {
        stage: {o["path"]: o.get("md5", "") for o in entry.get("outs", [])} for stage, entry in lock["stages"].items()
    }


def selected(stage: str, fast: bool) -> bool:
    return not fast or stage.split("@")[0] in FAST_STAGES


def differing_files(path: str, committed: str, rebuilt: str, caches: list[Path], clone_cache: Path) -> str:
    if not committed.endswith(".dir"):
        return path
    old, new = manifest(committed, caches), manifest(rebuilt, [clone_cache])
    if old is None or new is None:
        return f"{path}/ (its committed file list is in no cache here)"
    names = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
    return ", ".join(f"{path}/{n}" for n in names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="only the cheap stages: " + ", ".join(FAST_STAGES))
    ap.add_argument("--keep", action="store_true", help="keep the scratch clone (default: removed when all are equal)")
    ap.add_argument("--rev", default="HEAD", help="the commit whose dvc.lock is checked (default: HEAD)")
    ap.add_argument(
        "--against",
        type=Path,
        help="compare with this dvc.lock file instead of the commit's own (a lock "
        "being made from the same code, or one rebuilt on another machine)",
    )
    args = ap.parse_args()

    rev = git("rev-parse", "--short", args.rev)
    if args.rev == "HEAD" and git("status", "--porcelain", "--untracked-files=no"):
        console.print("[yellow]note:[/] this checkout has uncommitted changes; the committed HEAD is what is verified")
    flags = " ".join(reported_flags()) or "none of " + ", ".join(REPORTED_FLAGS)
    console.print(f"verifying dvc.lock of {rev} on a CPU with {flags}; {os.cpu_count()} cores")
    clone = ROOT.parent / f".tallrec-verify-{rev}"
    shutil.rmtree(clone, ignore_errors=True)
    git("clone", "-q", "--no-hardlinks", str(ROOT), str(clone))
    git("checkout", "-q", "--detach", rev, cwd=clone)
    committed = lock_outputs(yaml.safe_load((args.against or clone / "dvc.lock").read_text()))
    stages = [s for s in committed if selected(s, args.fast)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DVC_")}
    start = time.perf_counter()
    # every stage of the pipeline, or the fast ones: the lock is rewritten with what this machine made.
    # --force: a stage whose outputs are already in the clone's cache (another stage made the same bytes,
    # e.g. two empty text-embedding tables) would otherwise be checked out, not run
    cmd = ["dvc", "repro", "--force", "--no-run-cache", *([] if not args.fast else stages)]
    done = subprocess.run(cmd, cwd=clone, env=env)
    minutes = (time.perf_counter() - start) / 60
    if done.returncode != 0:
        console.print(
            f"[bold red]error:[/] `{' '.join(cmd)}` failed in {clone} (exit {done.returncode}) after {minutes:.1f} min"
        )
        return 1
    rebuilt = lock_outputs(yaml.safe_load((clone / "dvc.lock").read_text()))
    caches = [ROOT / ".dvc" / "cache", ROOT.parent / "shared" / "dvc-remote"]
    table = Table(title=f"dvc.lock of {rev} rebuilt from clean ({minutes:.1f} min; CPU: {flags})")
    for column in ("stage", "outputs", "result"):
        table.add_column(column)
    bad = []
    for stage in stages:
        outs = committed[stage]
        diff = [
            differing_files(p, md5, rebuilt.get(stage, {}).get(p, ""), caches, clone / ".dvc" / "cache")
            for p, md5 in outs.items()
            if rebuilt.get(stage, {}).get(p) != md5
        ]
        table.add_row(stage, str(len(outs)), "[green]equal[/]" if not diff else "[red]DIFFERENT:[/] " + "; ".join(diff))
        if diff:
            bad.append(stage)
    Console(width=200).print(table)
    if bad:
        console.print(
            f"[bold red]{len(bad)} of {len(stages)} stages differ[/] from {args.against or 'the committed dvc.lock'}: "
            f"{', '.join(bad)} "
            f"(the rebuild is kept in {clone})"
        )
        return 1
    print(f"all {len(stages)} stages equal to {args.against or 'the committed dvc.lock'}")
    if not args.keep:
        shutil.rmtree(clone, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
