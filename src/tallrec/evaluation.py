"""The evaluate stage: score every trained configuration on every test domain, and AUC.

The score of a sample is p("Yes") = softmax over the Yes/No logits at the answer position, from one
forward pass (tallrec.scoring); AUC comes from scikit-learn. The untuned backbone is scored the
same way: it is the in-context-learning row ("icl").

Outputs, per configuration:
- metrics/predictions/llm/<config>/<test_domain>.parquet: domain, user, target_item_id, label, score
  (the same columns as the baselines' predictions);
- metrics/llm/<config>.json: AUC per test domain and what produced it;
and metrics/llm.json with every configuration's AUC, which `dvc exp show` lists as columns.
A configuration whose summary already records the same inputs is not scored again (resume).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tallrec import paths
from tallrec.config import Params, as_dict
from tallrec.io import DataError, sha256_of, write_json, write_parquet
from tallrec.metrics import auc

PREDICTION_COLUMNS = ("domain", "user", "target_item_id", "label", "score")


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


COMBINED = paths.LLM_METRICS


def eval_configs(params: Params) -> list[EvalConfig]:
    from tallrec.tuning import rec_grid

    name = params.model.name
    configs = []
    if params.evaluate.icl:
        configs.append(EvalConfig("icl", None, "icl"))
    if params.rec_tune.variant == "at" or params.evaluate.include_at:
        configs.append(EvalConfig("at", paths.alpaca_adapter_dir(name), "at"))
    for run in rec_grid(params.rec_tune):
        configs.append(EvalConfig(run.name, paths.rec_adapter_dir(name, run.name), run.variant, run.train_domain, run.k, run.seed))
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


def _inputs_key(cfg: EvalConfig, params: Params) -> dict[str, Any]:
    from tallrec.model import base_dir

    base_info = base_dir(params.model.name) / "tallrec_base.json"
    domains = list(params.evaluate.test_domains)
    return {
        "model": as_dict(params.model), "prompt": as_dict(params.prompt),
        "base": base_info.read_text() if base_info.exists() else None,
        "adapter_sha256": sha256_of(cfg.adapter / "adapter_model.safetensors") if cfg.adapter else None,
        "test_domains": domains, "test_size": params.evaluate.test_size,
        "tests": {d: sha256_of(paths.split_path(d, "test")) for d in domains},
        "code": sha256_of(*(Path(__file__).parent / f for f in ("evaluation.py", "scoring.py", "model.py", "prompts.py"))),
    }


def evaluate_one(cfg: EvalConfig, params: Params) -> dict[str, Any]:
    """Score one configuration on every test domain; write its predictions and summary."""
    from tallrec.model import base_dir, context_length, load_scoring_model
    from tallrec.prompts import prompt_budget, rec_prompts
    from tallrec.runtime import run_metadata
    from tallrec.scoring import score_prompts

    section = params.evaluate
    if cfg.adapter is not None and not (cfg.adapter / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"{cfg.adapter}: adapter missing (run the tuning stage first)")
    key = _inputs_key(cfg, params)
    try:
        old = json.loads(summary_path(cfg.name).read_text())
        if old.get("inputs") == key and all(predictions_path(cfg.name, d).exists() for d in section.test_domains):
            return old
    except (OSError, ValueError):
        pass

    model, tokenizer = load_scoring_model(base_dir(params.model.name), cfg.adapter, params.model)
    budget = prompt_budget(tokenizer, min(params.model.max_length, context_length(model)), params.prompt)
    param = next(model.parameters())
    result: dict[str, Any] = {
        "config": cfg.name, "model": params.model.name, "variant": cfg.variant, "train_domain": cfg.train_domain,
        "k": cfg.k, "seed": cfg.seed, "auc": {}, "n": {}, "shortened_prompts": {}, "seconds": {},
        "runtime": run_metadata(param.device, param.dtype),
    }
    for domain in section.test_domains:
        df = test_frame(domain, section.test_size)
        t = time.perf_counter()
        prompts, result["shortened_prompts"][domain] = rec_prompts(df, params.prompt, tokenizer, budget)
        scores = score_prompts(model, tokenizer, prompts, batch_size=section.batch_size, prompt=params.prompt)
        result["seconds"][domain] = round(time.perf_counter() - t, 1)
        labels = df["label"].cast(pl.Int64).to_numpy()
        result["auc"][domain] = auc(labels, scores)
        result["n"][domain] = df.height
        write_parquet(
            df.select("domain", "user", "target_item_id", "label").with_columns(score=pl.Series(scores, dtype=pl.Float64)),
            predictions_path(cfg.name, domain),
        )
    result["inputs"] = key
    write_json(result, summary_path(cfg.name))
    return result


def evaluate(params: Params) -> dict[str, dict[str, float]]:
    """Every configuration; writes metrics/llm.json ({config: {<domain>_auc: ...}})."""
    from rich.console import Console

    console = Console(stderr=True)
    combined: dict[str, dict[str, float]] = {}
    for cfg in eval_configs(params):
        res = evaluate_one(cfg, params)
        combined[cfg.name] = {f"{d}_auc": round(v, 6) for d, v in res["auc"].items()}
        console.print(f"{cfg.name}: " + ", ".join(f"{d} AUC {v:.4f}" for d, v in res["auc"].items()))
    write_json(combined, COMBINED)
    return combined
