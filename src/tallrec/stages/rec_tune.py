"""rec_tune (stage 2): one configuration (variant, train domain, K, seed) -> models/rec/<name>/<config>/.

tallrec continues the stage-1 adapter on the K-shot draw, rt trains a fresh one, at is stage 1 alone
(its adapter is copied: K, domain and seed do not change it). Early stopping on validation AUC keeps
the best epoch. An interrupted run resumes from its checkpoint in scratch/ (keyed by a fingerprint of
params, inputs and the training code).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict

import polars as pl

from tallrec import paths
from tallrec.config import Params, as_dict
from tallrec.io import DataError, atomic_dir, sha256_of, write_json


def main(params: Params, variant: str, domain: str, k: int, seed: int) -> str:
    from tallrec.runtime import configure_threads
    from tallrec.config import RecRun

    configure_threads(params.model.threads)
    run = RecRun(variant, domain, k, seed)
    out = paths.rec_adapter_dir(params.model.name, run.name)
    stage1 = paths.alpaca_adapter_dir(params.model.name)
    if variant in ("tallrec", "at") and not (stage1 / paths.ADAPTER_WEIGHTS).exists():
        raise FileNotFoundError(f"{stage1}: stage-1 adapter missing (run `tallrec alpaca-tune`)")
    if variant == "at":
        with atomic_dir(out) as tmp:
            shutil.copytree(stage1, tmp, dirs_exist_ok=True)
        # dvc.yaml declares a curves folder for every instance: DVC fails a stage that leaves one out
        with atomic_dir(paths.LLM_CURVES / run.name) as tmp:
            write_json({"step": 0, "rec_tuned": False}, tmp / "metrics.json")
        return f"{run.name}: the stage-1 adapter, not rec-tuned"
    state = tune(run, params, start=stage1 if variant == "tallrec" else None)
    best = (
        f"{state.best_auc:.4f} at epoch {state.best_epoch}"
        if state.best_auc is not None
        else "none (every AUC was NaN)"
    )
    return f"{run.name}: best valid AUC {best}, {state.epoch} epochs"


def tune(run, params: Params, start=None, *, hooks=None):
    """Train one configuration; `hooks` (a tallrec.train.loop.TrainHooks) are the tests' interruptions."""
    from tallrec.model import add_lora, base_dir, context_length, load_base
    from tallrec.prompts import prompt_budget, rec_prompts
    from tallrec.train.batches import encode_all
    from tallrec.train.checkpoint import STATE, base_digest, code_digest, fingerprint_of
    from tallrec.train.curves import curves
    from tallrec.train.loop import TrainConfig, TrainHooks, train

    section = params.rec_tune
    cfg = TrainConfig.of(section, params.model.max_length, run.seed)
    shots = paths.shot_path(run.train_domain, run.k, run.seed)
    if not shots.exists():
        raise DataError(shots, "K-shot draw not found (run `tallrec sample` with this K and seed)")
    base = base_dir(params.model.name)
    fingerprint = fingerprint_of(
        "rec",
        run,
        as_dict(params.model),
        as_dict(params.lora),
        asdict(cfg),
        section.valid_size,
        as_dict(params.prompt),
        sha256_of(shots),
        base_digest(base),
        sha256_of(start / paths.ADAPTER_WEIGHTS) if start else None,
        code_digest(),
    )
    model, tokenizer = load_base(base, params.model)
    budget = prompt_budget(tokenizer, params.prompt, params.model.max_length, context_length(model))
    df = pl.read_parquet(shots)
    prompts, shortened = rec_prompts(df, params.prompt, tokenizer, budget)
    examples = encode_all(tokenizer, prompts, df["output"].to_list(), cfg)
    model = add_lora(model, params.lora, start, seed=run.seed)
    vdf = valid_frame(run.train_domain, section.valid_size, run.seed)
    valid = (rec_prompts(vdf, params.prompt, tokenizer, budget)[0], vdf["label"].cast(pl.Int64).to_list())
    ckpt = paths.checkpoint_dir(fingerprint)
    scratch_curves = ckpt.with_name(ckpt.name + ".curves")
    live = curves(scratch_curves, resume=(ckpt / STATE).exists())
    try:
        return train(
            model,
            tokenizer,
            examples,
            cfg,
            paths.rec_adapter_dir(params.model.name, run.name),
            fingerprint=fingerprint,
            checkpoint=ckpt,
            valid=valid,
            prompt=params.prompt,
            live=live,
            publish=[(scratch_curves, paths.LLM_CURVES / run.name)],
            hooks=hooks or TrainHooks(),
            desc=run.name,
            shortened_prompts=shortened,
        )
    finally:
        live.end()


def valid_frame(train_domain: str, size: int | None, seed: int) -> pl.DataFrame:
    """A seeded subset of the validation split (for "both": half from each domain)."""
    import numpy as np

    domains = ["movie", "book"] if train_domain == "both" else [train_domain]
    frames = []
    for d in domains:
        df = pl.read_parquet(paths.split_path(d, "valid"))
        order = np.random.default_rng(seed).permutation(df.height)
        if size:
            order = order[: max(1, size // len(domains))]
        frames.append(df[order.tolist()])
    return pl.concat(frames, how="diagonal_relaxed")


if __name__ == "__main__":
    from tallrec.stages import run

    run(main, str, str, int, int)
