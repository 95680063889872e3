"""The benchmarks' own logic: what a results file says about its machine (benchmarks/record.py), and how
bench_cuts.py deals the stages' batches out to two processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tallrec import numerics

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def machine_line(pinned: bool) -> str:
    """record.machine() in a fresh process, with or without the canonical variables in force."""
    from test_numerics import clean_env

    env = clean_env(**(numerics.CANONICAL_ENV if pinned else {}))
    code = f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import record; print(record.machine())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_a_results_file_says_whether_the_kernels_were_pinned():
    # a benchmark that never pins runs the CPU's own kernels while the switch still reads "canonical":
    # the header follows the variables in force, not the switch
    assert "kernels the CPU's own (not pinned)" in machine_line(pinned=False)
    assert "kernels pinned to AVX2 (canonical numerics)" in machine_line(pinned=True)


def test_dealt_shares_cut_back_into_the_stage_batches(tiny_backbone):
    """bench_cuts' two-process candidate: each process's share, sorted and cut as a Scorer does, is made
    of exactly the stages' batches, so the candidate scores the same forward passes."""
    sys.path.insert(0, str(BENCHMARKS))
    from bench_cuts import deal
    from conftest import TINY_CORPUS_WORDS
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_backbone)
    words = TINY_CORPUS_WORDS.split()
    prompts = ["shared instruction prefix " * 3 + " ".join(words[: 1 + i % len(words)]) for i in range(37)]
    ids = tok(prompts)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    stage_batches = [order[s : s + 4] for s in range(0, len(order), 4)]
    shares = deal(prompts, tok, batch_size=4, processes=2)
    assert sorted(i for share in shares for i in share) == list(range(len(prompts)))
    assert all(shares)
    rebuilt = []
    for share in shares:  # a Scorer sorts its prompts by length, stably, and cuts every 4 rows
        again = sorted(share, key=lambda i: len(ids[i]), reverse=True)
        rebuilt += [again[s : s + 4] for s in range(0, len(again), 4)]
    assert sorted(map(tuple, rebuilt)) == sorted(map(tuple, stage_batches))
