"""Canonical numerics (tallrec.numerics): the same params give the same bytes on every AVX2 CPU.

The cross-CPU test runs a tiny pipeline (tests/tiny_pipeline.py) natively and under qemu-x86_64 emulating
an AVX2-only CPU, and compares every output file. On an AVX512 host it fails without the pinning
(`TALLREC_NUMERICS=native`: 15 of 32 files differ); on an AVX2-only host the two CPU kinds are the
same, so there it checks emulation and determinism only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tallrec import numerics

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "tiny_pipeline.py"
QEMU = shutil.which("qemu-x86_64")
AVX2_ONLY_CPU = "EPYC-Milan"  # qemu emulates no AVX512; EPYC-Milan has AVX2 and FMA


def clean_env(**changes: str) -> dict[str, str]:
    """This process's environment without the canonical variables: a child must set them itself."""
    env = {k: v for k, v in os.environ.items() if k not in numerics.CANONICAL_ENV and k != numerics.SWITCH}
    return {**env, "PYTHONPATH": str(ROOT / "src"), **changes}


def tiny_digests(folder: Path, *args: str, emulate: bool = False, **env: str) -> dict[str, str]:
    shutil.rmtree(folder, ignore_errors=True)  # every run in the same folder: some outputs name their paths
    cmd = [sys.executable, str(TINY), str(folder), *args]
    if emulate:
        cmd = [QEMU, "-cpu", AVX2_ONLY_CPU, *cmd]
    done = subprocess.run(cmd, env=clean_env(**env), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)["files"]


def differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("cross_cpu") / "project"
    return folder, tiny_digests(folder)


def test_a_tiny_pipeline_gives_the_same_bytes_on_an_emulated_avx2_cpu(native):
    if QEMU is None:
        if os.environ.get("CI"):
            pytest.fail("qemu-x86_64 not found: .ci/run installs Debian's qemu-user")
        pytest.skip("qemu-x86_64 not installed (apt-get install qemu-user); CI runs this test")
    folder, here = native
    emulated = tiny_digests(folder, emulate=True)
    assert len(here) > 25 and here.keys() == emulated.keys()
    assert not differing(here, emulated), (
        f"files that differ on an emulated {AVX2_ONLY_CPU}: {differing(here, emulated)}"
    )


def test_the_tiny_pipeline_is_deterministic_and_the_llm_outputs_ignore_the_thread_count(native):
    """Twice the same bytes; with 2 torch threads instead of 1 the adapters and LLM predictions are the
    same bytes too (only the summaries differ: they record the thread count). SASRec's predictions do
    change with threads, which is why every thread count is a param with a fixed default."""
    folder, one = native
    assert not differing(one, tiny_digests(folder))
    two = tiny_digests(folder, "--threads", "2")
    llm = [
        f
        for f in one
        if f.startswith(("models/alpaca/", "models/rec/", "metrics/predictions/llm/"))
        and f.endswith((".safetensors", ".parquet"))
    ]
    assert len(llm) == 4
    assert not [f for f in llm if one[f] != two[f]]
    records_threads = {
        "metrics/llm/icl.json",
        "metrics/llm/tallrec_movie_k8_seed0.json",
        "models/alpaca/tiny/train_state.json",
        "models/rec/tiny/tallrec_movie_k8_seed0/train_state.json",
    }
    assert set(differing(one, two)) <= records_threads | {
        f for f in one if f.startswith("metrics/predictions/baselines/")
    }


def test_a_stage_process_runs_on_the_avx2_kernels():
    code = "import tallrec.stages, torch, os; print(torch.backends.cpu.get_cpu_capability(), os.environ['MKL_CBWR'])"
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["AVX2", numerics.CANONICAL_ENV["MKL_CBWR"]]
    native = subprocess.run(
        [sys.executable, "-c", code.replace(", os.environ['MKL_CBWR']", "")],
        env=clean_env(**{numerics.SWITCH: "native"}),
        capture_output=True,
        text=True,
        check=True,
    )
    assert native.stdout.strip() in ("AVX2", "AVX512", "DEFAULT", "NO AVX")  # the CPU's own


def test_a_stage_refuses_to_run_when_torch_loaded_first():
    code = "import torch, sys; sys.argv = ['stage']\nfrom tallrec.stages import run\nrun(lambda params: 'ran')"
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 1 and "ran" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "loaded before the canonical numerics were set" in lines[0], done.stderr


def test_the_tallrec_command_pins_its_stage_commands_but_not_score_and_rank():
    code = (
        "import os, sys; from tallrec import launch\n"
        "argvs = (['fetch'], ['--help'], ['score', '--input', 'x'], ['rank'])\n"
        "print([launch.command_of(a) not in launch.FREE_COMMANDS for a in argvs])"
    )
    done = subprocess.run([sys.executable, "-c", code], env=clean_env(), capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[True, True, False, False]"
    help_ = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.argv = ['tallrec', 'fetch', '--help']\n"
            "from tallrec.launch import main\ntry: main()\nexcept SystemExit: pass\n"
            "import os; print('PINNED', os.environ.get('ATEN_CPU_CAPABILITY'))",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert "PINNED avx2" in help_.stdout


def test_a_cpu_without_avx2_stops_with_one_line(monkeypatch):
    for key in numerics.CANONICAL_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(numerics, "cpu_flags", lambda: frozenset({"sse2", "avx"}))
    with pytest.raises(numerics.NumericsError, match="this CPU has no AVX2"):
        numerics.pin()
    monkeypatch.setenv(numerics.SWITCH, "native")
    assert numerics.pin() is False and numerics.settings() == {"numerics": "native"}
    monkeypatch.setenv(numerics.SWITCH, "fast")
    with pytest.raises(numerics.NumericsError, match="TALLREC_NUMERICS='fast'"):
        numerics.mode()
