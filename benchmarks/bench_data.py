"""Time and peak memory of fetch + prepare + sample on the real data (target: under 30 s on 2 cores).

Usage: python benchmarks/bench_data.py [--quick]   (works in a scratch directory; writes benchmarks/results/data.md,
with --quick benchmarks/results/quick/data.md: the same work, it is quick already)
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from rich.table import Table

import record  # benchmarks/ is on sys.path when this file runs as a script
from tallrec import data, sampling
from tallrec.config import load_params

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="write to benchmarks/results/quick/")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    mirror = (ROOT / params.data.mirror).resolve()
    steps = [
        ("fetch", lambda: data.fetch(mirror)),
        ("prepare movie", lambda: data.prepare("movie", params)),
        ("prepare book", lambda: data.prepare("book", params)),
        ("prepare alpaca", lambda: data.prepare("alpaca", params)),
        ("sample", lambda: sampling.sample(params)),
    ]
    table = Table(title=f"data stages on the real mirror ({os.cpu_count()} CPUs)")
    for column in ("step", "seconds", "peak RSS so far (MiB)"):
        table.add_column(column, justify="right" if column != "step" else "left")
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        total = 0.0
        for name, step in steps:
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
            total += seconds
            table.add_row(name, f"{seconds:.1f}", f"{peak_rss_mib():.0f}")
        table.add_row("total", f"{total:.1f}", f"{peak_rss_mib():.0f}", style="bold")
    os.chdir(ROOT)
    record.save("data", [table], args.quick)


if __name__ == "__main__":
    main()
