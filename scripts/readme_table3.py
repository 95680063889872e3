"""Put the report's generated Table 3 (reports/table3.md, written by `dvc repro report`) into README.md
between its markers, so the README shows the table without anyone retyping it. tests/test_readme.py
fails when the two differ."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- table3:start (scripts/readme_table3.py) -->", "<!-- table3:end -->"


def spliced(readme: str, table: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table.strip()}\n{END}{tail}"


if __name__ == "__main__":
    readme = ROOT / "README.md"
    new = spliced(readme.read_text(), (ROOT / "reports" / "table3.md").read_text())
    readme.write_text(new)
    sys.exit(0)
