"""LoRA tuning, in two stages: alpaca_tune (instruction following) and rec_tune (K-shot samples).

One flat training loop in plain PyTorch (`train`) serves both stages. It is:
- conditional: the loss covers the answer tokens only (optionally the prompt too, as the original);
- deterministic: every shuffle draws from a seeded torch.Generator, and dropout from the seeded
  global RNG, both of which are saved with the checkpoint;
- resumable: after each epoch (and every `checkpoint_steps` optimizer steps) the LoRA weights,
  optimizer and RNG states (safetensors) and progress (JSON) go to a checkpoint folder; a restarted run
  continues from there and ends with the same weights as an uninterrupted one;
- early-stopped on validation AUC when validation prompts are given: the best epoch's adapter is kept.
The finished output (adapter + train_state.json) lands in one rename, so a folder is finished or absent.
The stage modules (tallrec.stages.alpaca_tune, rec_tune) put the pieces together; DVC decides what runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from tallrec import paths
from tallrec.config import AlpacaTuneParams, PromptParams, RecTuneParams
from tallrec.io import DataError, atomic_dir, remove_stale, sha256_of, write_json
from tallrec.metrics import auc as auc_of
from tallrec.model import BASE_INFO, write_adapter
from tallrec.prompts import alpaca_prompt, answer_tokens
from tallrec.runtime import run_metadata, write_run_log

IGNORE = -100  # label of a token that gets no loss
STATE = "train_state.json"


@dataclass(frozen=True)
class TrainConfig:
    """What the loop needs, taken from one tuning section of params (alpaca_tune or rec_tune)."""

    lr: float
    batch_size: int  # effective batch: gradients of batch_size / micro_batch micro-batches add up
    micro_batch: int
    epochs: int  # at most; early stopping may end sooner
    patience: int | None  # epochs without a better validation AUC before stopping
    warmup_steps: int  # linear warm-up, then constant lr
    weight_decay: float
    max_grad_norm: float | None
    train_on_inputs: bool  # the original trained on prompt tokens too; we default to the answer
    max_length: int
    seed: int
    eval_batch_size: int | None  # prompts per forward pass when validating (rec_tune only)
    checkpoint_steps: int  # also checkpoint every this many optimizer steps (0 = per epoch only)

    @classmethod
    def of(cls, section: AlpacaTuneParams | RecTuneParams, max_length: int, seed: int) -> "TrainConfig":
        rec = isinstance(section, RecTuneParams)
        return cls(
            lr=section.lr,
            batch_size=section.batch_size,
            micro_batch=section.micro_batch,
            epochs=section.max_epochs if rec else section.epochs,
            patience=section.patience if rec else None,
            warmup_steps=section.warmup_steps,
            weight_decay=section.weight_decay,
            max_grad_norm=section.max_grad_norm,
            train_on_inputs=section.train_on_inputs,
            max_length=max_length,
            seed=seed,
            eval_batch_size=section.eval_batch_size if rec else None,
            checkpoint_steps=section.checkpoint_steps,
        )


# ---------------------------------------------------------------------------------------------
# examples -> token ids


def encode(tokenizer, prompt: str, answer: list[int] | str, cfg: TrainConfig) -> tuple[list[int], list[int]] | None:
    """(input_ids, labels) for one example, or None when nothing of the answer fits.

    The answer's ids are the ones it has after "### Response:\\n" (prompts.answer_tokens, which the
    scorer reads too), so the model is trained on exactly the token whose logit is scored.
    """
    p = tokenizer(prompt)["input_ids"]
    a = answer_tokens(tokenizer, answer, strict=False) if isinstance(answer, str) else list(answer)
    if tokenizer.eos_token_id is not None:
        a = a + [tokenizer.eos_token_id]  # teaches the model to stop after the answer
    ids = (p + a)[: cfg.max_length]  # cut on the right as the original did; long alpaca tails go
    labels = ids.copy() if cfg.train_on_inputs else ([IGNORE] * len(p) + a)[: cfg.max_length]
    if len(p) >= len(ids) or all(t == IGNORE for t in labels[1:]):
        return None
    return ids, labels


def encode_all(tokenizer, prompts: Sequence[str], answers: Sequence[str], cfg: TrainConfig):
    cache: dict[str, list[int]] = {}  # the rec answers are two texts: look each up once
    out = []
    for p, a in zip(prompts, answers):
        if a not in cache:
            cache[a] = answer_tokens(tokenizer, a, strict=False)
        out.append(encode(tokenizer, p, cache[a], cfg))
        if len(cache) > 4:
            cache.clear()  # Alpaca answers are all different: no point keeping them
    return [e for e in out if e is not None]


def collate(examples, pad_id: int):
    """Left padded, so the answers of all rows end at the last column (see `loss_of`)."""
    width = max(len(ids) for ids, _ in examples)
    x = torch.full((len(examples), width), pad_id, dtype=torch.long)
    y = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for b, (ids, labels) in enumerate(examples):
        x[b, width - len(ids) :] = torch.tensor(ids)
        y[b, width - len(ids) :] = torch.tensor(labels)
        mask[b, width - len(ids) :] = 1
    return x, y, mask


def loss_of(model, x, y, mask, device) -> tuple[torch.Tensor, int]:
    """Summed token cross-entropy and the number of target tokens.

    Only the columns from the first labelled token on reach the LM head (`logits_to_keep`): with
    answer-only labels that is a handful of columns instead of the whole prompt times the vocabulary.
    """
    width = y.shape[1]
    labelled = (y[:, 1:] != IGNORE).any(0).nonzero()  # column 0 has no token before it to predict it
    first = int(labelled[0]) + 1 if len(labelled) else width - 1
    keep = width - first + 1  # logits at column t predict token t + 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # a padded row reads like the same sequence alone
    logits = model(
        input_ids=x.to(device), attention_mask=mask.to(device), position_ids=pos.to(device), logits_to_keep=keep
    ).logits
    targets = y[:, first:].to(device)
    loss = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((targets != IGNORE).sum())


def target_tokens(batch) -> int:
    return sum(sum(t != IGNORE for t in labels[1:]) for _, labels in batch)


# ---------------------------------------------------------------------------------------------
# state and checkpoints (safetensors + JSON: nothing in them can run code when read)


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


# facts of one run, not of its params: kept in the checkpoint and the run log, never in the hashed output
RUN_SPECIFIC = ("resumed_at", "seconds")


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
    set_peft_model_state_dict(model, load_file(folder / "adapter" / "adapter_model.safetensors"))
    restore_optimizer(optimizer, tensors, meta["optimizer"])
    return state, restore_rng(tensors, meta["rng"])


def fingerprint_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_digest() -> str:
    """The training code's own files: a change to them retrains instead of reusing a checkpoint."""
    here = Path(__file__).parent
    return sha256_of(*(here / f for f in ("tuning.py", "model.py", "prompts.py", "scoring.py", "metrics.py")))


# ---------------------------------------------------------------------------------------------
# the loop


def _progress():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        disable=os.environ.get("TALLREC_PROGRESS", "1") == "0",
    )


def train_step(model, optimizer, batch, cfg: TrainConfig, state: TrainState, pad_id: int, device) -> tuple[float, int]:
    """One optimizer step over `batch`; returns (summed loss, target tokens). A step whose loss or
    gradient is not finite is skipped and counted: through Adam it would poison every weight (a
    diverged bf16 run of qwen2.5-coder-1.5b on a GPU ended in NaN validation scores)."""
    params = [p for p in model.parameters() if p.requires_grad]
    # micro-batches of similar length carry little padding (13-22 % faster on our prompts); the step's
    # gradient is the same sum however the batch is cut
    batch = sorted(batch, key=lambda e: len(e[0]))
    n_tokens = target_tokens(batch)
    optimizer.zero_grad(set_to_none=True)
    step_loss = 0.0
    for m in range(0, len(batch), cfg.micro_batch):
        x, y, mask = collate(batch[m : m + cfg.micro_batch], pad_id)
        loss, _ = loss_of(model, x, y, mask, device)
        # divide by the whole batch's target tokens: every token weighs the same, however the cut
        (loss / max(n_tokens, 1)).backward()
        step_loss += loss.item()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or math.inf)
    if math.isfinite(step_loss) and math.isfinite(grad_norm.item()):
        lr = cfg.lr * min(1.0, (state.global_step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.step()
    else:
        state.skipped_steps += 1
    state.global_step += 1
    return step_loss, n_tokens


def end_epoch(state: TrainState, cfg: TrainConfig, valid_auc: float | None) -> bool:
    """Close an epoch in `state`; True when it is the best so far (the adapter to keep). A NaN AUC
    is never an improvement, also in the first epoch."""
    record: dict[str, float] = {"epoch": state.epoch + 1, "loss": state.epoch_loss / max(state.epoch_tokens, 1)}
    state.epoch_loss, state.epoch_tokens = 0.0, 0
    improved = valid_auc is None
    if valid_auc is not None:
        record["valid_auc"] = valid_auc
        improved = not math.isnan(valid_auc) and (state.best_auc is None or valid_auc > state.best_auc)
        if improved:
            state.best_auc, state.best_epoch, state.bad_epochs = valid_auc, state.epoch + 1, 0
        else:
            state.bad_epochs += 1
    state.epoch += 1
    state.step_in_epoch = 0
    state.history.append(record)
    if valid_auc is not None and cfg.patience is not None and state.bad_epochs >= cfg.patience:
        state.stopped_early = True
        state.epoch = cfg.epochs  # nothing left to do, also after a restart
    return improved


def train(
    model,
    tokenizer,
    examples: list[tuple[list[int], list[int]]],
    cfg: TrainConfig,
    out: Path,
    *,
    fingerprint: str,
    checkpoint: Path | None = None,
    valid: tuple[Sequence[str], Sequence[int]] | None = None,
    prompt: PromptParams = PromptParams(),
    live=None,
    publish: Sequence[tuple[Path, Path]] = (),
    stop_after_epochs: int | None = None,
    stop_after_steps: int | None = None,
    desc: str = "train",
    shortened_prompts: int = 0,
) -> TrainState:
    """Train the LoRA of `model` (a peft model) on encoded examples; the result goes to `out`.

    `out/` gets, in one rename at the end, the adapter (the best epoch's when `valid` is given, else the
    last) and `train_state.json`. `checkpoint` (default: the scratch folder of this fingerprint) holds
    the resume state while the run is unfinished and is removed when it is done. `publish`: (scratch
    folder, output folder) pairs, such as `live`'s curves, swapped in just before the adapter.
    `stop_after_epochs` / `stop_after_steps` end the run as if interrupted right after that checkpoint.
    """
    from tallrec.scoring import score_prompts

    if not examples:
        raise ValueError(f"{out}: no training examples")
    out, ckpt = Path(out), Path(checkpoint) if checkpoint is not None else paths.checkpoint_dir(fingerprint)
    for folder in (out, ckpt, best_dir(ckpt)):
        remove_stale(folder)  # half-written folders of a run killed while saving
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)

    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    # fused: its step is the same bytes on every AVX2 CPU; the default (foreach) step's float32 sqrt is
    # not correctly rounded and follows the CPU's instructions (tallrec.numerics)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        fused=device.type == "cpu" or None,
    )
    state = TrainState(
        fingerprint=fingerprint,
        shortened_prompts=shortened_prompts,
        runtime=run_metadata(device, next(model.parameters()).dtype),
    )
    epoch_gen_state = gen.get_state()
    resumed = load_checkpoint(ckpt, fingerprint, model, optimizer)
    if resumed is not None:
        state, epoch_gen_state = resumed
        state.resumed_at.append(state.global_step)
    if live is not None:
        live.step = state.epoch  # one curve row per finished epoch; a resumed run continues the count

    def checkpoint_now() -> None:
        state.seconds = time.perf_counter() - start_time
        save_checkpoint(ckpt, model, optimizer, state, epoch_gen_state)

    start_time = time.perf_counter() - state.seconds
    with _progress() as bar:
        task = bar.add_task(
            desc,
            total=cfg.epochs * steps_per_epoch,
            completed=state.epoch * steps_per_epoch + state.step_in_epoch,
            info="",
        )
        while state.epoch < cfg.epochs:
            # the epoch's order comes from the generator state saved at its start, so a run
            # resumed mid-epoch replays the same order and skips the steps already taken
            gen.set_state(epoch_gen_state)
            order = torch.randperm(len(examples), generator=gen).tolist()
            model.train()
            for step in range(state.step_in_epoch, steps_per_epoch):
                batch = [examples[i] for i in order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
                loss, n_tokens = train_step(model, optimizer, batch, cfg, state, pad_id, device)
                state.step_in_epoch, state.epoch_loss, state.epoch_tokens = (
                    step + 1,
                    state.epoch_loss + loss,
                    state.epoch_tokens + n_tokens,
                )
                bar.update(task, advance=1, info=f"loss {loss / max(n_tokens, 1):.3f}")
                if (
                    cfg.checkpoint_steps
                    and state.global_step % cfg.checkpoint_steps == 0
                    and step + 1 < steps_per_epoch
                ):
                    checkpoint_now()
                    if stop_after_steps is not None and state.global_step >= stop_after_steps:
                        return state  # simulated interruption
            auc = None
            if valid is not None:
                auc = auc_of(
                    valid[1],
                    score_prompts(
                        model, tokenizer, list(valid[0]), batch_size=cfg.eval_batch_size, prompt=prompt, progress=False
                    ),
                )
            if end_epoch(state, cfg, auc):
                save_adapter(model, best_dir(ckpt))
            epoch_gen_state = gen.get_state()
            if live is not None:
                live.log_metric("train/loss", state.history[-1]["loss"])
                if auc is not None:
                    live.log_metric("valid/auc", auc)
                live.next_step()
            if auc is not None:
                bar.update(task, info=f"valid AUC {auc:.4f} (best {state.best_auc or float('nan'):.4f})")
            checkpoint_now()
            if stop_after_epochs is not None and state.epoch >= stop_after_epochs and state.epoch < cfg.epochs:
                return state  # simulated interruption
    if live is not None:
        live.end()  # its files complete before they are published
    return finish(model, state, out, ckpt, time.perf_counter() - start_time, log_name=f"train/{desc}", publish=publish)


def best_dir(ckpt: Path) -> Path:
    """The best epoch's adapter so far, beside the checkpoint."""
    return ckpt.with_name(ckpt.name + ".best")


def save_adapter(model, folder: Path) -> None:
    """A standard peft adapter folder (adapter_config.json + adapter_model.safetensors), atomically."""
    with atomic_dir(folder) as tmp:
        write_adapter(model, tmp)


def finish(
    model,
    state: TrainState,
    out: Path,
    ckpt: Path,
    seconds: float,
    log_name: str,
    publish: Sequence[tuple[Path, Path]] = (),
) -> TrainState:
    """Put the kept adapter and train_state.json into `out` as one rename (a kill leaves `out` whole:
    the old one or the finished one), then drop the checkpoint. The `publish` folders are swapped in
    first: a kill between the swaps leaves the checkpoint, and the next run, resuming at the end, swaps
    all of them again. With no epoch better than NaN the last weights are kept. train_state.json holds
    only what params and code determine (a resumed run's equals an uninterrupted one's); wall time and
    resume points go to the run log."""
    best = best_dir(ckpt)
    state.done, state.seconds = True, seconds
    for scratch, destination in publish:
        with atomic_dir(destination) as tmp:
            shutil.copytree(scratch, tmp, dirs_exist_ok=True)
    with atomic_dir(out) as tmp:
        if (best / "adapter_model.safetensors").exists():
            for name in os.listdir(best):
                shutil.copy2(best / name, tmp / name)
        else:
            write_adapter(model, tmp)
        write_json({k: v for k, v in asdict(state).items() if k not in RUN_SPECIFIC}, tmp / STATE)
    write_run_log(log_name, output=str(out), **{k: getattr(state, k) for k in RUN_SPECIFIC})
    for folder in (ckpt, best, *(scratch for scratch, _ in publish)):
        shutil.rmtree(folder, ignore_errors=True)
    return state


# ---------------------------------------------------------------------------------------------
# the stages' inputs


def alpaca_examples(max_samples: int | None, seed: int) -> tuple[list[str], list[str]]:
    path = paths.split_path("alpaca", "train")
    if not path.exists():
        raise DataError(path, "alpaca samples not found (run `tallrec prepare alpaca`)")
    df = pl.read_parquet(path)
    order = np.random.default_rng(seed).permutation(df.height)  # a seeded subset, not the first rows
    if max_samples:
        order = order[:max_samples]
    df = df[order.tolist()]
    return [alpaca_prompt(i, x) for i, x in zip(df["instruction"], df["input"])], df["output"].to_list()


def base_digest(base: Path) -> str:
    """What identifies the base weights: the verified GGUF sha256 or the recorded source."""
    info = base / BASE_INFO
    return info.read_text() if info.exists() else str(base)


# ---------------------------------------------------------------------------------------------
# rec_tune's validation data and curves


def valid_frame(train_domain: str, size: int | None, seed: int) -> pl.DataFrame:
    """A seeded subset of the validation split (for "both": half from each domain)."""
    domains = ["movie", "book"] if train_domain == "both" else [train_domain]
    frames = []
    for d in domains:
        df = pl.read_parquet(paths.split_path(d, "valid"))
        order = np.random.default_rng(seed).permutation(df.height)
        if size:
            order = order[: max(1, size // len(domains))]
        frames.append(df[order.tolist()])
    return pl.concat(frames, how="diagonal_relaxed")


def curves(folder: Path, resume: bool):
    """dvclive logger of one configuration's curves (train loss, valid AUC per epoch), written into a
    scratch folder that `train` publishes with the adapter (a killed run leaves the finished curves
    alone). `train` sets its step to the epochs already done; rows from an epoch a kill cut short are
    dropped here."""
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)  # an unfinished older run's
    try:
        from dvclive import Live
    except ImportError:  # a machine without DVC, such as a bare GPU box: the same files, written by hand
        return TsvCurves(folder)
    # no dvc.yaml edits, no report, no git
    return TrimmingLive(Live(str(folder), resume=resume, report=None, save_dvc_exp=False, dvcyaml=None), folder)


def trim_curves(folder: Path, steps: int) -> None:
    """Keep only the rows of steps < `steps` in every curve file of `folder` (dvclive's layout)."""
    for tsv in (Path(folder) / "plots" / "metrics").rglob("*.tsv"):
        header, *rows = tsv.read_text().splitlines()
        at = header.split("\t").index("step")
        kept = [r for r in rows if int(r.split("\t")[at]) < steps]
        if len(kept) != len(rows):
            tsv.write_text("\n".join([header, *kept]) + "\n")


class TrimmingLive:
    """dvclive's Live whose step can be set back to the epochs a resumed run has done (dvclive's own
    resume restarts at step 0 after one finished step, and keeps rows of an epoch a kill cut short)."""

    def __init__(self, live, folder: Path):
        self.live, self.folder, self.ended = live, folder, False

    @property
    def step(self) -> int:
        return self.live.step

    @step.setter
    def step(self, value: int) -> None:
        trim_curves(self.folder, value)
        self.live.step = value

    def log_metric(self, name: str, value: float) -> None:
        self.live.log_metric(name, value)

    def next_step(self) -> None:
        self.live.next_step()

    def end(self) -> None:
        if not self.ended:
            self.live.end()
        self.ended = True


class TsvCurves:
    """The part of dvclive's Live that `train` uses, writing the files dvclive writes
    (`<folder>/plots/metrics/<metric>.tsv`, columns step and the metric's last name part), so
    `dvc plots show` draws curves made where dvclive is not installed."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.root = self.folder / "plots" / "metrics"
        self.pending: dict[str, float] = {}
        self._step = 0

    @property
    def step(self) -> int:
        return self._step

    @step.setter
    def step(self, value: int) -> None:
        trim_curves(self.folder, value)
        self._step = value

    def log_metric(self, name: str, value: float) -> None:
        self.pending[name] = value

    def next_step(self) -> None:
        for name, value in self.pending.items():
            path = self.root / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            with path.open("a") as f:
                f.write((f"step\t{name.split('/')[-1]}\n" if new else "") + f"{self._step}\t{value}\n")
        self.pending.clear()
        self._step += 1

    def end(self) -> None:
        self.pending.clear()
