"""Canonical numerics: the same params give the same output bytes on every x86-64 CPU with AVX2.

torch (ATen), oneDNN, MKL, numpy and OpenBLAS pick their kernels from the CPU's feature flags when they
load, and their AVX512 kernels round differently from the AVX2 ones: a lock made on one CPU kind could
not be rebuilt on another (issue 22: 10 of 21 stages differed on an AVX512 EPYC). Every pipeline stage
therefore caps all of them at AVX2 through the variables below, which each library reads once, when it
initialises: `pin()` must run before the first of them is imported, and before the first random draw
(`torch.randn` itself follows the ATen capability). The other two halves of the rule live with their
params: fp32 everywhere (`model.dtype`, `baselines.bert_bf16`), and a thread count that is a param
with a fixed default (`model.threads`, `baselines.threads` / `workers`), never the machine's core count.

`TALLREC_NUMERICS=native` is the one switch out: the libraries pick their own kernels (faster on
AVX512 / AMX CPUs) and outputs follow the CPU. It is recorded in every run's metadata, so such
outputs never hash like canonical ones; they are never committed to dvc.lock.

This module imports nothing heavy: it is loaded before torch.
"""

from __future__ import annotations

import functools
import os
import sys

SWITCH = "TALLREC_NUMERICS"  # canonical (default) or native
MODES = ("canonical", "native")

# each library's own switch, capping its runtime dispatch at AVX2
CANONICAL_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # torch's own CPU kernels (DispatchStub)
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (mkldnn) convolutions, matmuls, RNN cells
    "MKL_CBWR": "AVX2,STRICT",  # MKL's conditional numerical reproducibility: the AVX2 code path, strict mode
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",  # MKL's dispatch otherwise
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's / scipy's OpenBLAS: its AVX2 kernels
    # numpy's own SIMD dispatch (its AVX512 paths use other exp/log/sin approximations)
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
LIBRARIES = ("torch", "numpy", "scipy", "sklearn")  # read the variables when they load


class NumericsError(RuntimeError):
    """The canonical environment could not be put in place (a CPU without AVX2, a library loaded first)."""


def mode() -> str:
    value = os.environ.get(SWITCH, "canonical").strip().lower() or "canonical"
    if value not in MODES:
        raise NumericsError(f"{SWITCH}={value!r}: expected one of {', '.join(MODES)}")
    return value


# the flags that pick kernels or bf16 speed, as the run log, verify.py and the benchmarks report a machine
REPORTED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def reported_flags() -> tuple[str, ...]:
    """Which of REPORTED_FLAGS this CPU has, in REPORTED_FLAGS' order."""
    return tuple(f for f in REPORTED_FLAGS if f in cpu_flags())


def is_pinned() -> bool:
    return all(os.environ.get(k) == v for k, v in CANONICAL_ENV.items())


def pin() -> bool:
    """Put the canonical environment in place for this process and its children (True), or leave the
    kernels to the CPU under `TALLREC_NUMERICS=native` (False). Raises NumericsError on a CPU without
    AVX2, or when a library that reads the variables is already loaded without them."""
    if mode() == "native":
        return False
    if is_pinned():
        return True
    flags = cpu_flags()
    if flags and "avx2" not in flags:
        raise NumericsError(
            "this CPU has no AVX2: the pipeline's canonical numerics (AVX2 kernels, fp32) need it; "
            f"set {SWITCH}=native to run with this CPU's own kernels (outputs then follow the CPU)"
        )
    loaded = [name for name in LIBRARIES if name in sys.modules]
    if loaded:
        raise NumericsError(
            f"{', '.join(loaded)} loaded before the canonical numerics were set: run the stage as "
            f"`python -m tallrec.stages.<stage>` or `tallrec <stage>`, or export {describe_env()}"
        )
    os.environ.update(CANONICAL_ENV)
    return True


def pin_if_early() -> None:
    """`pin()` where it can still take effect (no library loaded yet); otherwise leave it to `require()`,
    never setting variables that a loaded library would no longer read."""
    if mode() == "canonical" and not any(name in sys.modules for name in LIBRARIES):
        pin()


def require() -> None:
    """For a pipeline stage: the canonical environment is in force, or native was asked for."""
    if mode() == "canonical" and not is_pinned():
        pin()


def describe_env() -> str:
    return " ".join(f"{k}={v!r}" if " " in v else f"{k}={v}" for k, v in CANONICAL_ENV.items())


def settings() -> dict[str, object]:
    """What the numerics of this process were: stored in every run's metadata (and so hashed)."""
    if mode() == "native":
        return {"numerics": "native"}
    return {"numerics": "canonical", "isa": "avx2", "mkl_cbwr": CANONICAL_ENV["MKL_CBWR"]}
