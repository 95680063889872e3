"""The training loop (`train`), one optimizer step, the end of an epoch, and the finished output."""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from tallrec import paths
from tallrec.batching import pad_id_of, positions
from tallrec.config import PromptParams, TrainingParams
from tallrec.io import atomic_dir, remove_stale, write_json
from tallrec.metrics import auc as auc_of
from tallrec.model import write_adapter
from tallrec.runtime import run_metadata, write_run_log
from tallrec.train.batches import IGNORE, collate, target_tokens
from tallrec.train.checkpoint import (
    RUN_SPECIFIC,
    STATE,
    TrainState,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)


@dataclass(frozen=True)
class TrainConfig:
    """What the loop needs, taken from one tuning section of params (alpaca_tune or rec_tune)."""

    lr: float
    batch_size: int  # effective batch: gradients of batch_size / micro_batch micro-batches add up
    micro_batch: int
    max_epochs: int  # early stopping may end sooner
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
    def of(cls, section: TrainingParams, max_length: int, seed: int) -> "TrainConfig":
        return cls(
            lr=section.lr,
            batch_size=section.batch_size,
            micro_batch=section.micro_batch,
            max_epochs=section.max_epochs,
            patience=section.patience,
            warmup_steps=section.warmup_steps,
            weight_decay=section.weight_decay,
            max_grad_norm=section.max_grad_norm,
            train_on_inputs=section.train_on_inputs,
            max_length=max_length,
            seed=seed,
            eval_batch_size=section.eval_batch_size,
            checkpoint_steps=section.checkpoint_steps,
        )


@dataclass(frozen=True)
class TrainHooks:
    """Test-only: end the run as if it were interrupted right after the checkpoint that completes
    this many epochs, or (mid-epoch checkpoints) this many optimizer steps."""

    stop_after_epochs: int | None = None
    stop_after_steps: int | None = None


def loss_of(model, x, y, mask, device) -> tuple[torch.Tensor, int]:
    """Summed token cross-entropy and the number of target tokens.

    Only the columns from the first labelled token on reach the LM head (`logits_to_keep`): with
    answer-only labels that is a handful of columns instead of the whole prompt times the vocabulary.
    """
    width = y.shape[1]
    labelled = (y[:, 1:] != IGNORE).any(0).nonzero()  # column 0 has no token before it to predict it
    first = int(labelled[0]) + 1 if len(labelled) else width - 1
    keep = width - first + 1  # logits at column t predict token t + 1
    logits = model(
        input_ids=x.to(device),
        attention_mask=mask.to(device),
        position_ids=positions(mask).to(device),
        logits_to_keep=keep,
    ).logits
    targets = y[:, first:].to(device)
    loss = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return loss, int((targets != IGNORE).sum())


def progress():
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
        state.epoch = cfg.max_epochs  # nothing left to do, also after a restart
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
    hooks: TrainHooks = TrainHooks(),
    desc: str = "train",
    shortened_prompts: int = 0,
) -> TrainState:
    """Train the LoRA of `model` (a peft model) on encoded examples; the result goes to `out`.

    `out/` gets, in one rename at the end, the adapter (the best epoch's when `valid` is given, else the
    last) and `train_state.json`. `checkpoint` (default: the scratch folder of this fingerprint) holds
    the resume state while the run is unfinished and is removed when it is done. `publish`: (scratch
    folder, output folder) pairs, such as `live`'s curves, swapped in just before the adapter.
    `hooks`: the tests' simulated interruptions.

    One function because the loop's locals (state, generator state, optimizer) are what a checkpoint
    saves; cut into pieces they would travel as a bundle of arguments.
    """
    from tallrec.scoring import score_prompts

    if not examples:
        raise ValueError(f"{out}: no training examples")
    out, ckpt = Path(out), Path(checkpoint) if checkpoint is not None else paths.checkpoint_dir(fingerprint)
    for folder in (out, ckpt, best_dir(ckpt)):
        remove_stale(folder)  # half-written folders of a run killed while saving
    device = next(model.parameters()).device
    pad_id = pad_id_of(tokenizer)
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
    with progress() as bar:
        task = bar.add_task(
            desc,
            total=cfg.max_epochs * steps_per_epoch,
            completed=state.epoch * steps_per_epoch + state.step_in_epoch,
            info="",
        )
        while state.epoch < cfg.max_epochs:
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
                    if hooks.stop_after_steps is not None and state.global_step >= hooks.stop_after_steps:
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
            stop = hooks.stop_after_epochs
            if stop is not None and state.epoch >= stop and state.epoch < cfg.max_epochs:
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
    only what params and inputs determine (a resumed run's equals an uninterrupted one's, and a change
    of the code alone leaves it alone); the fingerprint, wall time and resume points go to the run log."""
    best = best_dir(ckpt)
    state.done, state.seconds = True, seconds
    for scratch, destination in publish:
        with atomic_dir(destination) as tmp:
            shutil.copytree(scratch, tmp, dirs_exist_ok=True)
    with atomic_dir(out) as tmp:
        if (best / paths.ADAPTER_WEIGHTS).exists():
            for name in os.listdir(best):
                shutil.copy2(best / name, tmp / name)
        else:
            write_adapter(model, tmp)
        write_json({k: v for k, v in asdict(state).items() if k not in RUN_SPECIFIC}, tmp / STATE)
    write_run_log(log_name, output=str(out), **{k: getattr(state, k) for k in RUN_SPECIFIC})
    for folder in (ckpt, best, *(scratch for scratch, _ in publish)):
        shutil.rmtree(folder, ignore_errors=True)
    return state
