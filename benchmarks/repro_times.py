"""How long each stage of the last `dvc repro` took, read from its outputs: writes benchmarks/results/repro.md.

    python benchmarks/repro_times.py --start EPOCH_SECONDS --total "MM:SS wall" [--note TEXT]

A stage's finish is the newest inode change time (creation, for a new file) among the outputs dvc.lock
pins for it (a folder's newest file); its duration runs from the previous stage's finish (the first
from --start). Run it right after `make repro` from clean, before anything rewrites an output; the table
names the commit, the CPU
flags, the threads and the torch version it was measured with.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from tallrec.numerics import reported_flags  # noqa: E402


def newest(path: Path) -> float:
    if path.is_dir():
        return max((p.stat().st_ctime for p in path.rglob("*") if p.is_file()), default=path.stat().st_ctime)
    return path.stat().st_ctime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", type=float, required=True, help="when `make repro` started (seconds since the epoch)")
    ap.add_argument("--total", required=True, help="the wall time `time make repro` printed, e.g. 33m12.5s")
    ap.add_argument("--note", default="", help="what else ran on the machine, or anything to say about the run")
    args = ap.parse_args()
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    # a one-instance matrix stage is in the lock twice (`rec_tune` and `rec_tune@tallrec-movie-64-0`): the
    # instance is kept
    lock = {s: e for s, e in lock.items() if not any(o.startswith(f"{s}@") for o in lock)}
    finishes = sorted(
        (max(newest(ROOT / o["path"]) for o in entry.get("outs", [])), stage)
        for stage, entry in lock.items()
        if entry.get("outs")
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    import torch

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    flags = " ".join(reported_flags())
    lines = [
        "# `make repro` from clean, stage by stage",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d} at commit {commit} (the code that made dvc.lock): "
        f"CPU flags `{flags}`, {os.cpu_count()} cores, torch {torch.__version__}, canonical numerics "
        f"(fp32, `model.threads: {params['model']['threads']}`), `make repro` total {args.total} (`time make repro`, "
        "set-up included). Stage times are the gaps between the stages' newest outputs "
        "(`python benchmarks/repro_times.py`).",
        "",
        "| stage | minutes |",
        "|---|---|",
    ]
    previous = args.start
    for finish, stage in finishes:
        lines.append(f"| {stage} | {(finish - previous) / 60:.1f} |")
        previous = finish
    lines.append(f"| **all stages** | **{(previous - args.start) / 60:.1f}** |")
    if args.note:
        lines += ["", args.note]
    out = ROOT / "benchmarks" / "results" / "repro.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
