"""LoRA tuning, in two stages: alpaca_tune (instruction following) and rec_tune (K-shot samples).

One flat training loop in plain PyTorch (`train`) serves both stages. It is:
- conditional: the loss covers the answer tokens only (optionally the prompt too, as the original);
- deterministic: every shuffle draws from a seeded torch.Generator, and dropout from the seeded
  global RNG, both of which are saved with the checkpoint;
- resumable: after each epoch (and every `checkpoint_steps` optimizer steps) the LoRA weights,
  optimizer, RNG states and progress go to `checkpoint/`; a restarted run continues from there and
  ends with the same weights as an uninterrupted one;
- early-stopped on validation AUC when validation prompts are given: the best epoch's adapter is kept.
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
from tallrec.io import DataError, atomic_dir, sha256_of, write_json
from tallrec.prompts import alpaca_prompt

IGNORE = -100  # label of a token that gets no loss
STATE = "train_state.json"
VARIANTS = ("tallrec", "rt", "at")


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 3e-4
    batch_size: int = 16  # effective batch: gradients of batch_size / micro_batch micro-batches add up
    micro_batch: int = 4
    epochs: int = 1  # at most; early stopping may end sooner
    patience: int | None = None  # epochs without a better validation AUC before stopping
    warmup_steps: int = 0  # linear warm-up, then constant lr
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    train_on_inputs: bool = False  # the original trained on prompt tokens too; we default to the answer
    max_length: int = 512
    seed: int = 0
    eval_batch_size: int = 8
    checkpoint_steps: int = 0  # also checkpoint every this many optimizer steps (0 = per epoch only)

    def __post_init__(self):
        if self.batch_size % self.micro_batch:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of micro_batch {self.micro_batch}")


# ---------------------------------------------------------------------------------------------
# examples -> token ids


def rec_prompts(df: pl.DataFrame) -> list[str]:
    return [alpaca_prompt(i, x) for i, x in zip(df["instruction"], df["input"])]


def encode(tokenizer, prompt: str, answer: str, cfg: TrainConfig) -> tuple[list[int], list[int]] | None:
    """(input_ids, labels) for one example, or None when nothing of the answer fits.

    Prompt and answer are tokenized apart and joined, so the answer's first token is exactly the
    one the scorer reads after "### Response:\\n" (a joint tokenization could merge across it).
    """
    p = tokenizer(prompt)["input_ids"]
    a = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        a = a + [tokenizer.eos_token_id]  # teaches the model to stop after the answer
    ids = (p + a)[: cfg.max_length]  # cut on the right as the original did; long alpaca tails go
    labels = ids.copy() if cfg.train_on_inputs else ([IGNORE] * len(p) + a)[: cfg.max_length]
    if len(p) >= len(ids) or all(t == IGNORE for t in labels[1:]):
        return None
    return ids, labels


def encode_all(tokenizer, prompts: Sequence[str], answers: Sequence[str], cfg: TrainConfig):
    out = [encode(tokenizer, p, a, cfg) for p, a in zip(prompts, answers)]
    return [e for e in out if e is not None]


def collate(examples, pad_id: int):
    """Left padded, so the answers of all rows end at the last column (see `loss_of`)."""
    width = max(len(ids) for ids, _ in examples)
    x = torch.full((len(examples), width), pad_id, dtype=torch.long)
    y = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for b, (ids, labels) in enumerate(examples):
        x[b, width - len(ids):] = torch.tensor(ids)
        y[b, width - len(ids):] = torch.tensor(labels)
        mask[b, width - len(ids):] = 1
    return x, y, mask


def loss_of(model, x, y, mask, device) -> tuple[torch.Tensor, int]:
    """Summed token cross-entropy and the number of target tokens.

    Only the columns from the first labelled token on reach the LM head (`logits_to_keep`): with
    answer-only labels that is a handful of columns instead of the whole prompt times the vocabulary.
    """
    labelled = (y != IGNORE).any(0).nonzero()
    first = int(labelled[0]) if len(labelled) else y.shape[1] - 1
    keep = y.shape[1] - first + 1  # logits at column t predict token t + 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)  # a padded row reads like the same sequence alone
    logits = model(input_ids=x.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                   logits_to_keep=keep).logits
    targets = y[:, y.shape[1] - keep + 1:].to(device)
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")
    return loss, int((targets != IGNORE).sum())


# ---------------------------------------------------------------------------------------------
# the loop


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


def save_adapter(model, folder: Path) -> None:
    """A standard peft adapter folder (adapter_config.json + adapter_model.safetensors), atomically."""
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp)


def _save_checkpoint(folder: Path, model, optimizer, state: TrainState, rng: dict[str, Any]) -> None:
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp / "adapter")
        torch.save({"optimizer": optimizer.state_dict(), "rng": rng}, tmp / "trainer.pt")
        write_json(asdict(state), tmp / STATE)


def _load_checkpoint(folder: Path, fingerprint: str):
    try:
        state = TrainState(**json.loads((folder / STATE).read_text()))
        if state.fingerprint != fingerprint:
            return None  # another configuration's checkpoint: start afresh
        blob = torch.load(folder / "trainer.pt", weights_only=False)
        return state, blob
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _set_adapter_weights(model, adapter_folder: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(adapter_folder / "adapter_model.safetensors"))


def fingerprint_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]



def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                    console=Console(stderr=True), disable=os.environ.get("TALLREC_PROGRESS", "1") == "0")


def train(
    model,
    tokenizer,
    examples: list[tuple[list[int], list[int]]],
    cfg: TrainConfig,
    out: Path,
    *,
    fingerprint: str = "",
    valid: tuple[Sequence[str], Sequence[int]] | None = None,
    live=None,
    stop_after_epochs: int | None = None,
    stop_after_steps: int | None = None,
    desc: str = "train",
) -> TrainState:
    """Train the LoRA of `model` (a peft model) on encoded examples; the result goes to `out`.

    `out/` gets the adapter (the best epoch's when `valid` is given, else the last), `out/checkpoint/`
    the resume state and `out/train_state.json` the summary. `stop_after_epochs` / `stop_after_steps`
    end the run as if interrupted right after that checkpoint (for tests of the resume).
    """
    from tallrec.evaluation import auc as auc_of
    from tallrec.scoring import score_prompts

    if not examples:
        raise ValueError(f"{out}: no training examples")
    out = Path(out)
    ckpt = out / "checkpoint"
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)

    seed_everything(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    params = _trainable(model)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = TrainState(fingerprint=fingerprint)
    epoch_gen_state = gen.get_state()

    resumed = _load_checkpoint(ckpt, fingerprint)
    if resumed is not None:
        state, blob = resumed
        _set_adapter_weights(model, ckpt / "adapter")
        optimizer.load_state_dict(blob["optimizer"])
        torch.set_rng_state(blob["rng"]["torch"])
        random.setstate(blob["rng"]["python"])
        np.random.set_state(blob["rng"]["numpy"])
        epoch_gen_state = blob["rng"]["epoch_gen"]
        if state.done:
            return state

    def rng_snapshot() -> dict[str, Any]:
        return {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
                "epoch_gen": epoch_gen_state}

    def validate() -> float:
        return auc_of(valid[1], score_prompts(model, tokenizer, list(valid[0]), batch_size=cfg.eval_batch_size, progress=False))

    start_time = time.perf_counter() - state.seconds
    with _progress() as bar:
        task = bar.add_task(desc, total=cfg.epochs * steps_per_epoch,
                            completed=state.epoch * steps_per_epoch + state.step_in_epoch, info="")
        while state.epoch < cfg.epochs:
            # the epoch's order comes from the generator state saved at its start, so a run
            # resumed mid-epoch replays the same order and skips the steps already taken
            gen.set_state(epoch_gen_state)
            order = torch.randperm(len(examples), generator=gen).tolist()
            next_epoch_gen_state = gen.get_state()
            model.train()
            for step in range(state.step_in_epoch, steps_per_epoch):
                batch = [examples[i] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
                # micro-batches of similar length carry little padding (15% faster on book prompts); the
                # step's gradient is the same sum whatever the cut
                batch.sort(key=lambda e: len(e[0]))
                n_tokens = sum(sum(t != IGNORE for t in lab[1:]) for _, lab in batch)
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for m in range(0, len(batch), cfg.micro_batch):
                    x, y, mask = collate(batch[m:m + cfg.micro_batch], pad_id)
                    loss, _ = loss_of(model, x, y, mask, device)
                    # divide by the whole batch's target tokens: every token weighs the same,
                    # however the batch is cut into micro-batches
                    (loss / max(n_tokens, 1)).backward()
                    step_loss += loss.item()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or math.inf)
                if math.isfinite(step_loss) and math.isfinite(grad_norm.item()):
                    lr = cfg.lr * min(1.0, (state.global_step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
                    for g in optimizer.param_groups:
                        g["lr"] = lr
                    optimizer.step()
                else:
                    # a NaN/inf loss or gradient would poison every weight through Adam: skip the step (a
                    # diverged bf16 run of qwen2.5-coder-1.5b on a GPU ended in NaN validation scores)
                    state.skipped_steps += 1
                state.global_step += 1
                state.step_in_epoch = step + 1
                state.epoch_loss += step_loss
                state.epoch_tokens += n_tokens
                bar.update(task, advance=1, info=f"loss {step_loss / max(n_tokens, 1):.3f}")
                if cfg.checkpoint_steps and state.global_step % cfg.checkpoint_steps == 0 and step + 1 < steps_per_epoch:
                    state.seconds = time.perf_counter() - start_time
                    _save_checkpoint(ckpt, model, optimizer, state, rng_snapshot())
                    if stop_after_steps is not None and state.global_step >= stop_after_steps:
                        return state  # simulated interruption

            record: dict[str, float] = {"epoch": state.epoch + 1, "loss": state.epoch_loss / max(state.epoch_tokens, 1)}
            state.epoch_loss, state.epoch_tokens = 0.0, 0
            improved = True
            if valid is not None:
                auc = validate()
                record["valid_auc"] = auc
                improved = state.best_auc is None or (not math.isnan(auc) and auc > state.best_auc)
                if improved:
                    state.best_auc, state.best_epoch, state.bad_epochs = auc, state.epoch + 1, 0
                else:
                    state.bad_epochs += 1
                bar.update(task, info=f"valid AUC {auc:.4f} (best {state.best_auc:.4f})")
            if improved:
                save_adapter(model, out / "best")
            state.epoch += 1
            state.step_in_epoch = 0
            state.history.append(record)
            epoch_gen_state = next_epoch_gen_state
            if live is not None:
                live.log_metric("train/loss", record["loss"])
                if "valid_auc" in record:
                    live.log_metric("valid/auc", record["valid_auc"])
                live.next_step()
            if valid is not None and cfg.patience is not None and state.bad_epochs >= cfg.patience:
                state.stopped_early = True
                state.epoch = cfg.epochs  # nothing left to do, also after a restart
            state.seconds = time.perf_counter() - start_time
            _save_checkpoint(ckpt, model, optimizer, state, rng_snapshot())
            if stop_after_epochs is not None and state.epoch >= stop_after_epochs and state.epoch < cfg.epochs:
                return state  # simulated interruption

    # the kept adapter lands at the top of out/, where PeftModel.from_pretrained(out) finds it
    # (best/ is already gone when a restart comes after this move but before `done` was saved)
    if (out / "best").is_dir():
        for name in os.listdir(out / "best"):
            os.replace(out / "best" / name, out / name)
        shutil.rmtree(out / "best", ignore_errors=True)
    state.done = True
    state.seconds = time.perf_counter() - start_time
    _save_checkpoint(ckpt, model, optimizer, state, rng_snapshot())
    write_json(asdict(state), out / STATE)
    return state


# ---------------------------------------------------------------------------------------------
# stage 1: alpaca_tune


def alpaca_dir(name: str) -> Path:
    return paths.alpaca_adapter_dir(name)


def rec_dir(name: str) -> Path:
    return paths.rec_adapter_dir(name)


def _section(params: dict[str, Any], key: str) -> dict[str, Any]:
    return dict(params.get(key) or {})


def _train_config(section: dict[str, Any], model_cfg, **override) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    kwargs = {k: section[k] for k in fields if k in section}
    kwargs.setdefault("max_length", model_cfg.max_length)
    if "max_epochs" in section:
        kwargs["epochs"] = section["max_epochs"]
    kwargs.update(override)
    return TrainConfig(**kwargs)


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


def alpaca_tune(params: dict[str, Any]) -> TrainState:
    from tallrec.model import LoraParams, ModelConfig, add_lora, base_dir, load_base

    mcfg = ModelConfig.from_params(params)
    section = _section(params, "alpaca_tune")
    cfg = _train_config(section, mcfg)
    lora = LoraParams.from_params(params)
    prompts, answers = alpaca_examples(section.get("max_samples"), cfg.seed)
    base = base_dir(mcfg.name)
    fingerprint = fingerprint_of("alpaca", mcfg, lora, cfg, len(prompts), _base_digest(base))
    out = alpaca_dir(mcfg.name)
    done = _finished(out, fingerprint)
    if done is not None:
        return done
    model, tokenizer = load_base(base, mcfg)
    examples = encode_all(tokenizer, prompts, answers, cfg)
    model = add_lora(model, lora, seed=cfg.seed)
    return train(model, tokenizer, examples, cfg, out, fingerprint=fingerprint, desc="alpaca_tune")


def _base_digest(base: Path) -> str:
    """What identifies the base weights: the verified GGUF sha256 or the recorded source."""
    info = base / "tallrec_base.json"
    return info.read_text() if info.exists() else str(base)


def _finished(out: Path, fingerprint: str) -> TrainState | None:
    try:
        state = TrainState(**json.loads((out / STATE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    ok = state.done and state.fingerprint == fingerprint and (out / "adapter_model.safetensors").exists()
    return state if ok else None


# ---------------------------------------------------------------------------------------------
# stage 2: rec_tune


@dataclass(frozen=True)
class RecRun:
    """One rec-tuning configuration of the grid. Its name carries every coordinate explicitly."""

    variant: str
    train_domain: str
    k: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.variant}_{self.train_domain}_k{self.k}_seed{self.seed}"


def rec_grid(params: dict[str, Any]) -> list[RecRun]:
    section = _section(params, "rec_tune")
    variant = section.get("variant", "tallrec")
    if variant not in VARIANTS:
        raise ValueError(f"rec_tune.variant must be one of {VARIANTS}, not {variant!r}")
    if variant == "at":
        return []  # stage 1 only: nothing to rec-tune
    return [RecRun(variant, d, int(k), int(s))
            for d in section.get("train_domains", ["movie", "book"])
            for k in section.get("ks", [64])
            for s in section.get("seeds", [0])]


def valid_set(train_domain: str, size: int | None, seed: int) -> tuple[list[str], list[int]]:
    """A seeded subset of the validation split (for "both": half from each domain)."""
    domains = ["movie", "book"] if train_domain == "both" else [train_domain]
    prompts: list[str] = []
    labels: list[int] = []
    for d in domains:
        df = pl.read_parquet(paths.split_path(d, "valid"))
        order = np.random.default_rng(seed).permutation(df.height)
        if size:
            order = order[: max(1, size // len(domains))]
        df = df[order.tolist()]
        prompts += rec_prompts(df)
        labels += df["label"].cast(pl.Int64).to_list()
    return prompts, labels


def rec_tune_one(run: RecRun, params: dict[str, Any], model=None, tokenizer=None, *, stop_after_epochs=None) -> TrainState:
    from tallrec.model import LoraParams, ModelConfig, add_lora, base_dir, load_base

    mcfg = ModelConfig.from_params(params)
    section = _section(params, "rec_tune")
    cfg = _train_config(section, mcfg, seed=run.seed)
    lora = LoraParams.from_params(params)
    shots = paths.shot_path(run.train_domain, run.k, run.seed)
    if not shots.exists():
        raise DataError(shots, "K-shot draw not found (run `tallrec sample` with this K and seed)")
    start = alpaca_dir(mcfg.name) if run.variant == "tallrec" else None
    if start is not None and not (start / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"{start}: stage-1 adapter missing (run `tallrec alpaca-tune`)")
    base = base_dir(mcfg.name)
    fingerprint = fingerprint_of(
        "rec", run, mcfg, lora, cfg, section.get("valid_size"), sha256_of(shots), _base_digest(base),
        sha256_of(start / "adapter_model.safetensors") if start else None)
    out = rec_dir(mcfg.name) / run.name
    done = _finished(out, fingerprint)
    if done is not None:
        return done
    if model is None:
        model, tokenizer = load_base(base, mcfg)
    df = pl.read_parquet(shots)
    examples = encode_all(tokenizer, rec_prompts(df), df["output"].to_list(), cfg)
    model = add_lora(model, lora, start, seed=run.seed)
    valid = valid_set(run.train_domain, section.get("valid_size"), run.seed)
    live = _live(run.name, resume=_load_checkpoint(out / "checkpoint", fingerprint) is not None)
    try:
        state = train(model, tokenizer, examples, cfg, out, fingerprint=fingerprint, valid=valid, live=live,
                      stop_after_epochs=stop_after_epochs, desc=run.name)
    finally:
        live.end()
    return state


def curves_dir() -> Path:
    return paths.LLM_CURVES


def _live(name: str, resume: bool):
    """dvclive logger of one configuration's curves (train loss, valid AUC per epoch)."""
    folder = curves_dir() / name
    if not resume:
        shutil.rmtree(folder, ignore_errors=True)  # curves of an older configuration under this name
    try:
        from dvclive import Live
    except ImportError:  # a machine without DVC, such as a bare GPU box: the same files, written by hand
        return TsvCurves(folder)
    # resume keeps the steps of an interrupted run; no dvc.yaml edits, no report, no git
    return Live(str(folder), resume=resume, report=None, save_dvc_exp=False, dvcyaml=None)


class TsvCurves:
    """The part of dvclive's Live that `train` uses, writing the files dvclive writes
    (`<folder>/plots/metrics/<metric>.tsv`, columns step and the metric's last name part), so
    `dvc plots show` draws curves made where dvclive is not installed. Appends, so a resumed run
    continues its curves."""

    def __init__(self, folder: Path):
        self.root = Path(folder) / "plots" / "metrics"
        self.pending: dict[str, float] = {}
        lengths = [len(f.read_text().splitlines()) - 1 for f in self.root.rglob("*.tsv")]
        self.step = max(lengths, default=0)

    def log_metric(self, name: str, value: float) -> None:
        self.pending[name] = value

    def next_step(self) -> None:
        for name, value in self.pending.items():
            path = self.root / f"{name}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            new = not path.exists()
            with path.open("a") as f:
                f.write((f"step\t{name.split('/')[-1]}\n" if new else "") + f"{self.step}\t{value}\n")
        self.pending.clear()
        self.step += 1

    def end(self) -> None:
        self.pending.clear()


def rec_tune(params: dict[str, Any]) -> list[tuple[RecRun, TrainState]]:
    """Every configuration of the grid; finished ones (same fingerprint) are skipped.

    Each run loads its own base: peft wraps a model in place, so one copy cannot carry two adapters.
    """
    from tallrec.model import ModelConfig

    # the stage's outputs exist even when the grid is empty (variant "at"), as DVC expects
    rec_dir(ModelConfig.from_params(params).name).mkdir(parents=True, exist_ok=True)
    curves_dir().mkdir(parents=True, exist_ok=True)
    return [(run, rec_tune_one(run, params)) for run in rec_grid(params)]
