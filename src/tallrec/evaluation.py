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
from tallrec.io import DataError, sha256_of, write_json, write_parquet

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


def eval_configs(params: dict[str, Any]) -> list[EvalConfig]:
    from tallrec.model import ModelConfig
    from tallrec.tuning import alpaca_dir, rec_dir, rec_grid

    name = ModelConfig.from_params(params).name
    section = dict(params.get("evaluate") or {})
    configs = []
    if section.get("icl", True):
        configs.append(EvalConfig("icl", None, "icl"))
    variant = (params.get("rec_tune") or {}).get("variant", "tallrec")
    if variant == "at" or section.get("include_at", False):
        configs.append(EvalConfig("at", alpaca_dir(name), "at"))
    for run in rec_grid(params):
        configs.append(EvalConfig(run.name, rec_dir(name) / run.name, run.variant, run.train_domain, run.k, run.seed))
    return configs


def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if len(np.unique(labels)) < 2:
        return float("nan")  # AUC is undefined with one class
    if not np.isfinite(scores).all():
        return float("nan")  # a diverged model: no ranking to measure (early stopping keeps an earlier epoch)
    return float(roc_auc_score(labels, scores))


def test_frame(domain: str, size: int | None, seed: int = 0) -> pl.DataFrame:
    path = paths.split_path(domain, "test")
    if not path.exists():
        raise DataError(path, f"test split not found (run `tallrec prepare {domain}`)")
    df = pl.read_parquet(path)
    if size and size < df.height:
        # a seeded subset for quick runs; the default (null) scores the whole test set
        df = df[np.sort(np.random.default_rng(seed).permutation(df.height)[:size]).tolist()]
    return df


def _inputs_key(cfg: EvalConfig, params: dict[str, Any], domains: list[str], size: int | None) -> dict[str, Any]:
    from tallrec.model import ModelConfig, base_dir

    mcfg = ModelConfig.from_params(params)
    base_info = base_dir(mcfg.name) / "tallrec_base.json"
    return {
        "model": mcfg.name, "dtype": mcfg.dtype, "quantize": mcfg.quantize,
        "base": base_info.read_text() if base_info.exists() else None,
        "adapter_sha256": sha256_of(cfg.adapter / "adapter_model.safetensors") if cfg.adapter else None,
        "test_domains": domains, "test_size": size,
        "tests": {d: sha256_of(paths.split_path(d, "test")) for d in domains},
    }


def evaluate_one(cfg: EvalConfig, params: dict[str, Any], *, model=None, tokenizer=None) -> dict[str, Any]:
    """Score one configuration on every test domain; write its predictions and summary."""
    from tallrec.model import ModelConfig, base_dir, load_adapter, load_base
    from tallrec.scoring import score_prompts
    from tallrec.tuning import rec_prompts

    section = dict(params.get("evaluate") or {})
    domains = list(section.get("test_domains", ["movie", "book"]))
    size = section.get("test_size")
    mcfg = ModelConfig.from_params(params)
    if cfg.adapter is not None and not (cfg.adapter / "adapter_model.safetensors").exists():
        raise FileNotFoundError(f"{cfg.adapter}: adapter missing (run the tuning stage first)")
    key = _inputs_key(cfg, params, domains, size)
    try:
        old = json.loads(summary_path(cfg.name).read_text())
        if old.get("inputs") == key and all(predictions_path(cfg.name, d).exists() for d in domains):
            return old
    except (OSError, ValueError):
        pass

    if model is None:
        model, tokenizer = load_base(base_dir(mcfg.name), mcfg)
    if cfg.adapter is not None:
        # not merged into the base: in bf16 the rounding of merged weights would blur a small LoRA
        # update, and the unmerged LoRA on q/v costs little; validation scored the same way
        model = load_adapter(model, cfg.adapter)
    result: dict[str, Any] = {
        "config": cfg.name, "model": mcfg.name, "variant": cfg.variant, "train_domain": cfg.train_domain,
        "k": cfg.k, "seed": cfg.seed, "auc": {}, "n": {}, "seconds": {},
    }
    for domain in domains:
        df = test_frame(domain, size)
        t = time.perf_counter()
        scores = score_prompts(model, tokenizer, rec_prompts(df), batch_size=int(section.get("batch_size", 8)))
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


def evaluate(params: dict[str, Any]) -> dict[str, dict[str, float]]:
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
