"""Scoring one configuration (a backbone with or without an adapter) on every test domain, and AUC.

The score of a sample is p("Yes") = softmax over the Yes/No logits at the answer position, from one
forward pass (tallrec.scoring); AUC from tallrec.metrics. The untuned backbone is scored the same
way: it is the in-context-learning row ("icl"). Outputs, per configuration:
- metrics/predictions/llm/<config>/<test_domain>.parquet: domain, user, target_item_id, label, score
  (the same columns as the baselines' predictions);
- metrics/llm/<config>.json: AUC and n per test domain, and what the run depended on (dtype, threads,
  numerics); its scoring seconds go to the run log, logs/evaluate/<config>.json.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tallrec import paths
from tallrec.config import Params, rec_grid
from tallrec.io import DataError, write_json, write_predictions
from tallrec.metrics import auc


@dataclass(frozen=True)
class EvalConfig:
    """One row of the results table: a backbone with (or without) an adapter."""

    name: str  # icl, at, or a rec-tune run name such as tallrec_movie_k64_seed0
    adapter: Path | None
    variant: str
    train_domain: str | None = None
    k: int | None = None
    seed: int | None = None


def summary_path(config: str) -> Path:
    return paths.llm_summary_path(config)


def predictions_path(config: str, test_domain: str) -> Path:
    return paths.llm_predictions_path(config, test_domain)


def eval_configs(params: Params) -> list[EvalConfig]:
    name = params.model.name
    configs = [EvalConfig("icl", None, "icl")]
    for run in rec_grid(params.rec_tune):
        configs.append(
            EvalConfig(run.name, paths.rec_adapter_dir(name, run.name), run.variant, run.train_domain, run.k, run.seed)
        )
    return configs


def test_frame(domain: str, size: int | None, seed: int = 0) -> pl.DataFrame:
    path = paths.split_path(domain, "test")
    if not path.exists():
        raise DataError(path, f"test split not found (run `tallrec prepare {domain}`)")
    df = pl.read_parquet(path)
    if size and size < df.height:
        # a seeded subset for quick runs; the default (null) scores the whole test set
        df = df[np.sort(np.random.default_rng(seed).permutation(df.height)[:size]).tolist()]
    return df


def evaluate_one(cfg: EvalConfig, params: Params) -> dict[str, Any]:
    """Score one configuration on every test domain; write its predictions and summary."""
    from tallrec.model import base_dir, context_length, load_scoring_model
    from tallrec.prompts import prompt_budget, rec_prompts
    from tallrec.runtime import run_metadata, write_run_log
    from tallrec.scoring import score_prompts

    section = params.evaluate
    if cfg.adapter is not None and not (cfg.adapter / paths.ADAPTER_WEIGHTS).exists():
        raise FileNotFoundError(f"{cfg.adapter}: adapter missing (run the tuning stage first)")
    model, tokenizer = load_scoring_model(base_dir(params.model.name), cfg.adapter, params.model)
    budget = prompt_budget(tokenizer, params.prompt, params.model.max_length, context_length(model))
    param = next(model.parameters())
    result: dict[str, Any] = {
        "config": cfg.name,
        "model": params.model.name,
        "variant": cfg.variant,
        "train_domain": cfg.train_domain,
        "k": cfg.k,
        "seed": cfg.seed,
        "auc": {},
        "n": {},
        "shortened_prompts": {},
        "runtime": run_metadata(param.device, param.dtype),
    }
    seconds: dict[str, float] = {}  # the run log's, not the hashed summary's
    for domain in section.test_domains:
        df = test_frame(domain, section.test_size)
        t = time.perf_counter()
        prompts, result["shortened_prompts"][domain] = rec_prompts(df, params.prompt, tokenizer, budget)
        scores = score_prompts(model, tokenizer, prompts, batch_size=section.batch_size, prompt=params.prompt)
        seconds[domain] = round(time.perf_counter() - t, 1)
        labels = df["label"].cast(pl.Int64).to_numpy()
        result["auc"][domain] = auc(labels, scores)
        result["n"][domain] = df.height
        write_predictions(df, scores, predictions_path(cfg.name, domain))
    write_json(result, summary_path(cfg.name))
    write_run_log(f"evaluate/{cfg.name}", seconds=seconds)
    return result
