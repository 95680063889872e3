"""Training state and the resume checkpoint (safetensors + JSON: nothing in them can run code when read),
and the fingerprint that says which run a checkpoint belongs to."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tallrec import paths
from tallrec.io import DataError, atomic_dir, sha256_of, write_json
from tallrec.model import BASE_INFO, write_adapter

STATE = "train_state.json"


@dataclass
class TrainState:
    fingerprint: str
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimizer steps done in the current epoch (mid-epoch checkpoint)
    global_step: int = 0
    best_auc: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    epoch_loss: float = 0.0  # running sums of the current epoch, so a mid-epoch resume reports it whole
    epoch_tokens: int = 0
    done: bool = False
    stopped_early: bool = False
    skipped_steps: int = 0  # optimizer steps skipped because the loss or gradient was not finite
    shortened_prompts: int = 0  # prompts whose oldest history items were dropped to fit model.max_length
    resumed_at: list[int] = field(default_factory=list)  # global steps at which a restarted run picked up
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    runtime: dict[str, Any] = field(default_factory=dict)  # dtype, threads, numerics: what else the result depends on


# facts of one run, not of its params: kept in the checkpoint and the run log, never in the hashed output.
# The fingerprint hashes the training code's files too: in the output, any refactor would change the
# adapter folder's DVC hash although the weights are the same.
RUN_SPECIFIC = ("fingerprint", "resumed_at", "seconds")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_tensors(epoch_gen_state: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG the loop draws from: tensors for safetensors, the rest as JSON."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.epoch_gen": epoch_gen_state,
        "rng.numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
    }
    return tensors, {"python": [version, list(mt), gauss], "numpy": [kind, int(pos), int(has_gauss), float(cached)]}


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> torch.Tensor:
    torch.set_rng_state(tensors["rng.torch"])
    version, mt, gauss = meta["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, tensors["rng.numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    return tensors["rng.epoch_gen"]


def optimizer_tensors(optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors = {f"opt.{i}.{name}": t for i, s in sd["state"].items() for name, t in s.items()}
    return tensors, {
        "param_groups": sd["param_groups"],
        "state_keys": {str(i): sorted(s) for i, s in sd["state"].items()},
    }


def restore_optimizer(optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state = {int(i): {name: tensors[f"opt.{i}.{name}"] for name in names} for i, names in meta["state_keys"].items()}
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(folder: Path, model, optimizer, state: TrainState, epoch_gen_state: torch.Tensor) -> None:
    from safetensors.torch import save_file

    rng, rng_meta = rng_tensors(epoch_gen_state)
    opt, opt_meta = optimizer_tensors(optimizer)
    with atomic_dir(folder) as tmp:
        write_adapter(model, tmp / "adapter")
        save_file({k: v.contiguous() for k, v in {**rng, **opt}.items()}, str(tmp / "trainer.safetensors"))
        write_json({"rng": rng_meta, "optimizer": opt_meta}, tmp / "trainer.json")
        write_json(asdict(state), tmp / STATE)


def load_checkpoint(folder: Path, fingerprint: str, model, optimizer) -> tuple[TrainState, torch.Tensor] | None:
    """Restore a checkpoint of this fingerprint into model and optimizer; None when there is none."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    pickled = [f.name for f in folder.glob("*.pt")] + [f.name for f in folder.glob("*.pkl")]
    if pickled:
        # an older or foreign checkpoint: a pickle can run any code when loaded, so it is never read
        raise DataError(
            folder / pickled[0],
            f"pickled checkpoint refused (it could run code); delete {folder} to train from the start",
        )
    try:
        state = TrainState(**json.loads((folder / STATE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if state.fingerprint != fingerprint:
        return None  # another configuration's checkpoint: start afresh
    tensors = load_file(folder / "trainer.safetensors")
    meta = json.loads((folder / "trainer.json").read_text())
    set_peft_model_state_dict(model, load_file(folder / "adapter" / paths.ADAPTER_WEIGHTS))
    restore_optimizer(optimizer, tensors, meta["optimizer"])
    return state, restore_rng(tensors, meta["rng"])


def fingerprint_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_digest() -> str:
    """The training code's own files: a change to them retrains instead of reusing a checkpoint.

    Every module of this package, and the modules the loop runs for its numbers (they are imported
    here, so a moved or renamed one fails loudly instead of dropping out of the digest)."""
    from tallrec import batching, metrics, model, prompts, scoring

    package = sorted(Path(__file__).parent.glob("*.py"))
    return sha256_of(*package, *(Path(m.__file__) for m in (batching, metrics, model, prompts, scoring)))


def base_digest(base: Path) -> str:
    """What identifies the base weights: the verified GGUF sha256 or the recorded source."""
    info = base / BASE_INFO
    return info.read_text() if info.exists() else str(base)
