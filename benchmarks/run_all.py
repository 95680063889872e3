"""Every benchmark, one after the other, each writing its table under benchmarks/results/ (`make bench`).

    python benchmarks/run_all.py            # full runs -> benchmarks/results/<name>.md (about an hour on 2 cores)
    python benchmarks/run_all.py --quick    # a few minutes -> benchmarks/results/quick/<name>.md

The scoring benchmarks read the built backbone and test splits (`make repro` first); without them they are
skipped with one line. The whole-pipeline benchmark (bench_repro.py) runs in full mode only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from rich.console import Console

from record import ROOT  # benchmarks/ is on sys.path when this file runs as a script

BASE = ROOT / "models" / "base" / "smollm2-135m"
TEST = ROOT / "data" / "processed" / "movie" / "test.parquet"
ADAPTER = ROOT / "models" / "rec" / "smollm2-135m" / "tallrec_movie_k64_seed0"

# (script and arguments, what it needs built, full mode only)
BENCHMARKS = [
    (["bench_data.py"], (), False),
    (["bench_baselines.py"], (TEST,), False),
    (["bench_scoring.py"], (BASE, TEST), False),
    (["bench_scoring.py", "--precision"], (BASE, TEST), False),
    (["bench_cuts.py"], (BASE, TEST, ADAPTER), False),
    (["bench_repro.py"], (), True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs into benchmarks/results/quick/")
    args = parser.parse_args()
    console, failed = Console(stderr=True), []
    for command, needs, full_only in BENCHMARKS:
        name = " ".join(command)
        missing = [str(p.relative_to(ROOT)) for p in needs if not p.exists()]
        if full_only and args.quick:
            console.print(f"[yellow]skip[/] {name}: full mode only")
            continue
        if missing:
            console.print(f"[yellow]skip[/] {name}: {', '.join(missing)} not built (run `make repro` first)")
            continue
        console.rule(name)
        start = time.perf_counter()
        script = ROOT / "benchmarks" / command[0]
        ran = subprocess.run([sys.executable, script, *command[1:], *(["--quick"] * args.quick)], cwd=ROOT)
        console.print(f"{name}: exit {ran.returncode} after {time.perf_counter() - start:.0f} s")
        if ran.returncode:
            failed.append(name)
    if failed:
        raise SystemExit(f"error: {len(failed)} benchmark(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
