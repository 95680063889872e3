"""Run one baseline over every domain x K x seed in params.yaml: metrics JSON plus test predictions.

Per run: train once per weight decay on the K-shot rows (early stopping on a fixed, seeded subset of
the valid split), keep the decay with the best validation AUC, and score the whole test split.
"""

from __future__ import annotations

import importlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable

import numpy as np
import polars as pl
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tallrec import paths
from tallrec.baselines import base
from tallrec.baselines.base import Vocab
from tallrec.config import BaselineParams, Params
from tallrec.io import DataError, write_json, write_predictions
from tallrec.metrics import auc
from tallrec.names import BASELINES, DOMAINS, TEXT_BASELINES


def builder(
    name: str, cfg: BaselineParams, vocab: Vocab, text: torch.Tensor | None, text_index: dict | None, history_len: int
) -> tuple[Callable, bool]:
    """(make_model, bf16) for a model name; the model owns its loss (`Model.loss`)."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}: expected one of {BASELINES}")
    module = importlib.import_module(f"tallrec.baselines.{name}")  # one network a file, its class `Model`
    text_model = name in TEXT_BASELINES
    if text_model:
        # DROS scores every vocabulary item: their text rows (UNK -> the mean vector, the table's last row)
        inverse = {i: item for item, i in vocab.index.items()}
        candidate_text = torch.tensor(
            [text_index[inverse[i]] if i in inverse else len(text) - 1 for i in range(vocab.size)]
        )

    def make_model():
        model = module.Model(cfg, vocab.size, text if text_model else history_len)
        model.popularity = vocab.popularity
        if text_model:
            model.candidate_text = candidate_text
        return model

    # bf16 is an explicit switch: emulated bf16 (no AVX512-BF16 / AMX) is slower, and bytes follow the CPU
    bf16 = cfg.bert_bf16 if text_model else False
    return make_model, bf16


def read_split(path) -> pl.DataFrame:
    if not path.exists():
        raise DataError(path, "split not found (run the prepare and sample stages first)")
    df = pl.read_parquet(path)
    missing = {"user", "history_item_ids", "history_labels", "target_item_id", "label"} - set(df.columns)
    if missing:
        raise DataError(path, f"missing columns {sorted(missing)}")
    if df.height == 0 or df["history_item_ids"].list.len().min() == 0:
        raise DataError(path, "empty split or a row with an empty history")
    return df


def run_one(
    name: str,
    cfg: BaselineParams,
    train_df,
    valid_df,
    test_df,
    text=None,
    text_index=None,
    *,
    seed: int,
    history_len: int,
) -> dict[str, Any]:
    """Train/select/score one (domain, K, seed); returns test AUC, chosen decay and the test scores."""
    vocab = Vocab.build(train_df, cfg.min_count)
    make_model, bf16 = builder(name, cfg, vocab, text, text_index, history_len)
    train, valid, test = (base.encode(df, vocab, history_len, text_index) for df in (train_df, valid_df, test_df))
    model, best, per_wd = base.fit_and_select(make_model, train, valid, cfg, seed, bf16)
    scores = base.predict(model, test, cfg, bf16)
    return {
        "auc": auc(test["label"].numpy(), scores),
        "weight_decay": best.weight_decay,
        "valid_auc": best.valid_auc,
        "epochs": best.epochs,
        "valid_auc_by_weight_decay": per_wd,
        "scores": scores,
    }


def domain_splits(name: str, domain: str, val_size: int | None) -> dict[str, Any]:
    """The fixed valid subset, the test split and (text models) the text table of a domain."""
    if domain not in DOMAINS:
        raise ValueError(f"baselines train and test in one domain: {domain!r} is not one of {DOMAINS}")
    valid = read_split(paths.split_path(domain, "valid"))
    valid = valid.sample(n=min(val_size, valid.height), seed=0) if val_size else valid
    test = read_split(paths.split_path(domain, "test"))
    for split, df in (("valid", valid), ("test", test)):
        if df["label"].n_unique() < 2:  # AUC is undefined: no epoch or weight decay could be chosen or scored
            raise DataError(
                paths.split_path(domain, split),
                f"{'the validation subset' if split == 'valid' else 'the test split'} "
                f"({df.height} rows) holds one class only: its AUC is undefined",
            )
    splits: dict[str, Any] = {
        "valid": valid,
        "test": test,
        "text": None,
        "text_index": None,
    }
    if name in TEXT_BASELINES:
        from tallrec.baselines.text_embed import load_text_table

        splits["text"], splits["text_index"] = load_text_table(domain)
    return splits


_worker_splits: dict[str, dict[str, Any]] = {}  # per process: a domain's splits are read once


def run_job(
    name: str, cfg: BaselineParams, history_len: int, threads: int, domain: str, k: int, seed: int
) -> dict[str, Any]:
    """One (domain, K, seed) of a model; runs in a worker process when `workers` > 1."""
    torch.set_num_threads(threads)
    if domain not in _worker_splits:
        _worker_splits[domain] = domain_splits(name, domain, cfg.val_size)
    s = _worker_splits[domain]
    return run_one(
        name,
        cfg,
        read_split(paths.shot_path(domain, k, seed)),
        s["valid"],
        s["test"],
        s["text"],
        s["text_index"],
        seed=seed,
        history_len=history_len,
    )


def run_model(name: str, params: Params) -> dict[str, Any]:
    """Every (domain, K, seed) of one model, `workers` at a time, each worker on threads // workers cores.

    Tiny models are dominated by per-step overhead that extra threads do not remove, so separate
    processes are what use both cores. Every job seeds itself, so the results do not depend on the
    order the jobs finish in (only on the thread count per job, like any float reduction)."""
    cfg = params.baselines
    domains, ks, seeds = cfg.domains, cfg.ks, cfg.seeds
    workers = max(1, cfg.workers)
    threads = max(1, cfg.threads // workers)
    jobs = [(domain, k, seed) for domain in domains for k in ks for seed in seeds]
    tests = {domain: domain_splits(name, domain, cfg.val_size)["test"] for domain in domains}  # fail early on bad input
    results: dict[tuple, dict[str, Any]] = {}

    def record(job: tuple, result: dict[str, Any]) -> None:
        domain, k, seed = job
        write_predictions(tests[domain], result.pop("scores"), paths.baseline_predictions_path(name, domain, k, seed))
        results[job] = result

    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"{name} ({workers} workers x {threads} threads)", total=len(jobs))
        if workers == 1:
            for job in jobs:
                progress.update(task, description=f"{name} {job[0]} k{job[1]} seed{job[2]}")
                record(job, run_job(name, cfg, params.data.history_len(job[0]), threads, *job))
                progress.advance(task)
        else:
            # spawn, not fork: a forked child of a process that already ran torch ops can hang in OpenMP
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {
                    pool.submit(run_job, name, cfg, params.data.history_len(job[0]), threads, *job): job for job in jobs
                }
                for future in as_completed(futures):
                    record(futures[future], future.result())
                    progress.advance(task)
    summary: dict[str, Any] = {}
    for domain in domains:
        summary[domain] = {}
        for k in ks:
            runs = {f"seed{seed}": results[(domain, k, seed)] for seed in seeds}
            aucs = np.array([r["auc"] for r in runs.values()])
            summary[domain][f"k{k}"] = {
                "auc_mean": round(float(aucs.mean()), 6),
                "auc_std": round(float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0, 6),
                "per_seed": {key: round(r["auc"], 6) for key, r in runs.items()},
                "weight_decay": {key: r["weight_decay"] for key, r in runs.items()},
                "valid_auc": {key: round(r["valid_auc"], 6) for key, r in runs.items()},
                "best_epoch": {key: r["epochs"] for key, r in runs.items()},
            }
    write_json(summary, paths.baseline_metrics_path(name))
    return summary
