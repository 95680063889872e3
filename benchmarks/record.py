"""Where every benchmark's table lands: `benchmarks/results/<name>.md` (a full run, committed, quoted by
the README and docs) or `benchmarks/results/quick/<name>.md` (`--quick`, git-ignored), each headed by the
machine it came from: date, commit, CPU flags, cores, torch threads, torch version, numerics mode and the
command. A table printed on a terminal is gone; a file can be quoted and checked (tests/test_readme.py).
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def commit() -> str:
    """The short commit, with `+changes` when the code (src/, benchmarks/) differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src", "benchmarks")
    return head + ("+changes" if dirty else "")


def machine(kernels: str | None = None) -> str:
    """The machine's line; `kernels` overrides what this process's kernels are (a benchmark that times
    pipeline stages, which pin the numerics in their own processes)."""
    import torch

    from tallrec import numerics

    flags = " ".join(numerics.reported_flags()) or "none of " + ", ".join(numerics.REPORTED_FLAGS)
    # whether the variables are in force, not the switch's value: a benchmark that never pins runs the
    # CPU's own kernels even though the switch reads "canonical"
    if kernels is None:
        kernels = "pinned to AVX2 (canonical numerics)" if numerics.is_pinned() else "the CPU's own (not pinned)"
    return (
        f"CPU flags `{flags}`, {os.cpu_count()} cores ({platform.machine()}), torch {torch.__version__} "
        f"with {torch.get_num_threads()} threads, kernels {kernels}"
    )


def markdown(table: Table) -> str:
    """A rich Table as a markdown table (the cells' text, without styles)."""
    columns = table.columns
    rows = [[str(c.header) for c in columns], ["---"] * len(columns)]
    cells = [list(c.cells) for c in columns]
    rows += [[str(cells[j][i]) for j in range(len(columns))] for i in range(table.row_count)]
    return "\n".join("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)


def save(name: str, tables: list[Table], quick: bool, notes: list[str] = (), kernels: str | None = None) -> Path:
    """Print the tables and write them to their results file (temp + rename); returns its path."""
    console = Console(width=160)
    for table in tables:
        console.print(table)
    folder = RESULTS / "quick" if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]])
    parts = [
        f"# {name}" + (" (quick mode)" if quick else ""),
        "",
        f"Measured {when} at commit {commit()}: {machine(kernels)}. Command: `{command}`.",
    ]
    for table in tables:
        parts += ["", f"**{table.title}**" if table.title else "", "", markdown(table)]
    parts += [""] + [f"{note}\n" for note in notes]
    path = folder / f"{name}.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts).rstrip() + "\n")
    tmp.replace(path)
    console.print(f"wrote {path.relative_to(ROOT)}")
    return path
