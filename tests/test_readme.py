"""The README's results table is the report's generated Table 3, not a retyped copy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_shows_the_generated_table3():
    spec = importlib.util.spec_from_file_location("readme_table3", ROOT / "scripts" / "readme_table3.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    readme = (ROOT / "README.md").read_text()
    assert module.spliced(readme, (ROOT / "reports" / "table3.md").read_text()) == readme
