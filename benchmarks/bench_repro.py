"""Wall time and peak memory of every stage of `dvc repro`, run one stage at a time in dvc.yaml order.

Target (default params.yaml, 2-core CPU): the whole pipeline in at most 45 minutes.
Each stage runs as `dvc repro --single-item <stage>`, so DVC skips the ones already up to date (use
--force to rebuild them all); the peak RSS is that of the stage's process tree (wait4 rusage).

Usage (from the project root):
    python benchmarks/bench_repro.py            # what `dvc repro` would run
    python benchmarks/bench_repro.py --force    # everything, from the raw data on
    python benchmarks/bench_repro.py --fresh    # --force without DVC's run-cache, and no checkpoints: a fresh clone
The table lands in benchmarks/results/repro_stages.md (no quick mode: it is the pipeline itself).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import time

from rich.console import Console
from rich.table import Table

import record  # benchmarks/ is on sys.path when this file runs as a script


def stage_names() -> list[str]:
    out = subprocess.run(["dvc", "stage", "list", "--name-only"], check=True, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def delete_checkpoints() -> None:
    """Unfinished runs' checkpoints would let a training stage resume instead of starting afresh."""
    if os.path.isdir("scratch"):
        Console(stderr=True).print("deleting scratch/")
        shutil.rmtree("scratch")


def run_stage(stage: str, force: bool, run_cache: bool) -> tuple[float, float, int]:
    """(seconds, peak RSS MiB of the stage's process tree, exit status)."""
    cmd = (
        ["dvc", "repro", "--single-item", stage]
        + (["--force"] if force else [])
        + ([] if run_cache else ["--no-run-cache"])
    )
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--force", action="store_true", help="rebuild stages that are up to date")
    parser.add_argument(
        "--fresh", action="store_true", help="--force, no run-cache, no checkpoints: a fresh clone's run"
    )
    args = parser.parse_args()
    if args.fresh:
        delete_checkpoints()
        args.force = True
    rows = []
    for stage in stage_names():
        seconds, rss, code = run_stage(stage, args.force, run_cache=not args.fresh)
        rows.append((stage, seconds, rss))
        Console(stderr=True).print(f"[bold]{stage}[/]: {seconds:.0f} s, peak {rss:.0f} MiB")
        if code != 0:
            raise SystemExit(f"stage {stage} failed with exit status {code}")
    table = Table(title=f"dvc repro, stage by stage ({os.cpu_count()} CPUs, load at the end {os.getloadavg()[0]:.1f})")
    for column in ("stage", "seconds", "minutes", "peak RSS (MiB)"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, seconds, rss in rows:
        table.add_row(stage, f"{seconds:.0f}", f"{seconds / 60:.1f}", f"{rss:.0f}")
    total = sum(r[1] for r in rows)
    table.add_row("total", f"{total:.0f}", f"{total / 60:.1f}", f"{max(r[2] for r in rows):.0f}", style="bold")
    record.save(
        "repro_stages",
        [table],
        quick=False,
        notes=["target: 45 minutes for the default params.yaml"],
        kernels="pinned to AVX2 by every stage (canonical numerics)",
    )


if __name__ == "__main__":
    main()
