"""Where a run executes: device, dtype and thread count, decided from params (and, for `auto`, fixed
facts of the machine), never from a timing probe or the machine's momentary load. `run_metadata` is what
a hashed output records of it: only what params and code determine (tallrec.numerics); the facts of the
machine (CPU flags, core count) and wall times go to the run log (tallrec.io.write_run_log)."""

from __future__ import annotations

import os
import platform

import torch

from tallrec import numerics

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU flags of native bf16 matrix arithmetic


def native_bf16() -> bool:
    """bf16 pays on a CPU only where it runs natively (AVX512-BF16 or AMX); emulated it is slower than
    fp32 (measured on an AVX2-only EPYC: text embedding 40 s instead of 11 s)."""
    return any(flag in numerics.cpu_flags() for flag in NATIVE_BF16_FLAGS)


def pick_device(device: str | None = None, setting: str = "model.device") -> torch.device:
    """The device to run on: `device` when given, checked to be on this machine (ValueError naming
    `setting` otherwise: torch's own failure came only once a model had loaded), else cuda when present."""
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{setting} {device}: not a device (cpu, cuda, cuda:N or mps)") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            why = "this torch is built without CUDA" if torch.version.cuda is None else "torch sees no GPU"
            raise ValueError(f"{setting} {device}: no CUDA device on this machine ({why}); use cpu")
        if chosen.index is not None and chosen.index >= count:
            raise ValueError(f"{setting} {device}: this machine has {count} CUDA device(s), numbered from 0")
    elif chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{setting} {device}: no MPS device on this machine; use cpu")
    return chosen


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` = bf16 on a GPU that supports it (else fp16) and on a CPU with native bf16, else fp32."""
    if dtype in DTYPES:
        return DTYPES[dtype]
    if dtype != "auto":
        raise ValueError(f"model.dtype must be auto, bf16, fp16 or fp32, not {dtype!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if native_bf16() else torch.float32


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def configure_threads(threads: int | None = None) -> int:
    """torch's thread count: `threads` (model.threads) or else every core this process may use. A float
    reduction's order follows the thread count, so the pipeline's params fix it (model.threads: 2)."""
    n = threads or usable_cores()
    torch.set_num_threads(n)
    return n


def run_metadata(device: torch.device | str, dtype: torch.dtype) -> dict[str, object]:
    """What a run's numbers depend on beyond its params, stored in its hashed outputs: only facts that
    the params, the code and the locked environment fix, never the CPU's flags or a time."""
    return {
        "device": str(device),
        "dtype": dtype_name(dtype),
        "threads": torch.get_num_threads(),
        **numerics.settings(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }


def machine_facts() -> dict[str, object]:
    """What this machine is (for the run log, never for a hashed output)."""
    return {
        "cpu_flags": sorted(numerics.reported_flags()),
        "cores": usable_cores(),
        "numerics": numerics.mode(),
    }


def quiet_libraries() -> None:
    """Keep the libraries offline, and silence output that tells a `tallrec` user nothing (our own rich
    bars show progress): transformers' and huggingface_hub's tqdm bars, deprecation FutureWarnings from inside the
    libraries, and bitsandbytes' notes about its optional CPU kernels and casts. Call before they load."""
    import logging
    import warnings

    # no download at run time: a hub id fails at once, in one line (export HF_HUB_OFFLINE=0 to allow one)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader calls tqdm directly
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|torch|accelerate)(\.|$)")
    warnings.filterwarnings("ignore", message=r"MatMul8bitLt: inputs will be cast")
    for name in ("bitsandbytes", "transformers", "peft", "huggingface_hub", "accelerate"):
        logging.getLogger(name).setLevel(logging.ERROR)


def write_run_log(name: str, **facts: object) -> None:
    """The run-specific record of a stage (seconds, resume points, this machine's flags and cores):
    logs/<name>.json, which no stage reads and DVC does not hash, so two runs of the same params hash alike."""
    from tallrec import paths
    from tallrec.io import write_json

    write_json({"name": name, **facts, **machine_facts()}, paths.run_log_path(name))
