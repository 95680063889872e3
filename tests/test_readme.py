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


def _block(text: str, name: str) -> str:
    start = text.index(f"<!-- {name}:start")
    return text[text.index("-->", start) + 3 : text.index(f"<!-- {name}:end -->")]


def test_every_number_in_the_results_reading_is_in_the_generated_results():
    """The paragraph that reads Table 3 quotes reports/results.md, not a run outside DVC: every decimal in
    it is found there (a number retyped from memory, or left over from an older lock, fails here)."""
    import re

    reading = _block((ROOT / "README.md").read_text(), "reading")
    results = (ROOT / "reports" / "results.md").read_text()
    numbers = re.findall(r"\d+\.\d+", reading)
    assert len(numbers) >= 10
    assert [n for n in numbers if n not in results] == []


def test_the_repro_timing_quotes_its_benchmark_file():
    """The README's `make repro` and `make verify-fast` times are the ones benchmarks/results/ recorded
    (with the CPU flags and the commit)."""
    import re

    block = _block((ROOT / "README.md").read_text(), "repro-time")
    recorded = "".join((ROOT / "benchmarks" / "results" / name).read_text() for name in ("repro.md", "verify.md"))
    numbers = re.findall(r"\d+\.\d+", block)
    assert numbers and [n for n in numbers if n not in recorded] == []
    assert "avx2" in recorded and "commit" in recorded
