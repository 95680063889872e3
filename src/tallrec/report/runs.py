"""What the report is computed from, each file checked before a number is taken from it: the LLM
configurations' summaries and predictions, the baselines' and the references' predictions, of the
workspace (this commit's `dvc repro`) and of the experiments under reports/imported/."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import polars as pl

from tallrec import paths
from tallrec.config import Params, rec_grid
from tallrec.experiments import read_experiment
from tallrec.io import DataError, read_json
from tallrec.names import BASELINES, DOMAINS, ICL, VARIANTS
from tallrec.references import REFERENCES

KEY = ("user", "target_item_id")  # a test row


@dataclass(frozen=True)
class Run:
    """One row's scores of one test set: a trained configuration, a baseline seed or a reference."""

    row: str  # tallrec, at, rt, icl, a baseline or a reference
    test_domain: str
    frame: pl.DataFrame  # user, target_item_id, label, score
    train_domain: str | None = None  # None: the row is not trained on a domain (icl)
    k: int | None = None  # None: the same run serves every K (icl)
    seed: int | None = None
    model: str = ""  # the LLM backbone
    source: str = "workspace"  # or the experiment it was imported from


PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a configuration or model name: never a path


def _frame(path: Path) -> pl.DataFrame:
    """A predictions file checked before a number is taken from it (an imported one may be crafted)."""
    if not path.is_file():
        raise DataError(path, "predictions file not found")
    try:
        df = pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as e:
        raise DataError(path, f"not a readable parquet file ({str(e).splitlines()[0]})") from None
    missing = [c for c in ("user", "target_item_id", "label", "score") if c not in df.columns]
    if missing:
        raise DataError(path, f"missing column {missing[0]!r} (expected user, target_item_id, label, score)")
    try:
        df = df.select(
            pl.col("user").cast(pl.String),
            pl.col("target_item_id").cast(pl.String),
            pl.col("label").cast(pl.Int8),
            pl.col("score").cast(pl.Float64),
        )
    except pl.exceptions.PolarsError:
        raise DataError(path, "label must be 0 or 1 and score a number in every row") from None
    if df.height == 0:
        raise DataError(path, "no rows")
    bad_label = df.filter(~pl.col("label").is_in([0, 1]))
    if bad_label.height:
        raise DataError(path, f"label {bad_label['label'][0]} (user {bad_label['user'][0]}): labels must be 0 or 1")
    bad_score = df.filter(~pl.col("score").is_finite() | pl.col("score").is_null())
    if bad_score.height:
        raise DataError(
            path, f"score {bad_score['score'][0]} (user {bad_score['user'][0]}): scores must be finite numbers"
        )
    if df.select(pl.struct(KEY).is_duplicated().any()).item():
        raise DataError(path, "a (user, target_item_id) row appears twice")
    return df


def _plain_names(meta: dict, key: str, where: Path) -> list[str]:
    names = meta.get(key, [])
    if not isinstance(names, list) or not all(isinstance(n, str) and PLAIN_NAME.fullmatch(n) for n in names):
        raise DataError(where, f"{key} must be a list of plain names (letters, digits, _ . -), got {names!r}")
    return names


# what the report reads of an evaluate summary (tallrec.evaluation writes it; an import may be crafted)
SUMMARY_SHAPE = {
    "variant": str,
    "train_domain": (str, None),
    "k": (int, None),
    "seed": (int, None),
    "model": str,
    "auc": dict,
}


def llm_runs(root: Path, configs: Iterable[str], source: str) -> list[Run]:
    """The runs of LLM configurations whose summary (metrics/llm/<config>.json) is under `root`."""
    runs = []
    for config in configs:
        summary_path = root / paths.llm_summary_path(config)
        summary = read_json(summary_path, SUMMARY_SHAPE)
        if summary["variant"] not in (*VARIANTS, ICL) or not set(summary["auc"]) <= set(DOMAINS):
            raise DataError(
                summary_path, f"unknown variant {summary['variant']!r} or test domain in {sorted(summary['auc'])}"
            )
        for domain in summary["auc"]:
            runs.append(
                Run(
                    summary["variant"],
                    domain,
                    _frame(root / paths.llm_predictions_path(config, domain)),
                    summary["train_domain"],
                    summary["k"],
                    summary["seed"],
                    summary["model"],
                    source,
                )
            )
    return runs


def grid_runs(
    root: Path,
    kind: str,
    names: Iterable[str],
    domains: Iterable[str],
    ks: Iterable[int],
    seeds: Iterable[int],
    source: str,
) -> list[Run]:
    """Baselines (kind "baselines") or references: one run per name x domain x K x seed that exists."""
    runs = []
    for name in names:
        for domain in domains:
            for k in ks:
                for seed in seeds:
                    path = root / (
                        paths.baseline_predictions_path(name, domain, k, seed)
                        if kind == "baselines"
                        else paths.reference_predictions_path(name, domain, k, seed)
                    )
                    if path.exists():
                        runs.append(Run(name, domain, _frame(path), domain, k, seed, "", source))
    return runs


def workspace_runs(params: Params) -> list[Run]:
    """Everything the pipeline of these params made: its LLM configurations and ICL, the baselines and
    the references."""
    b = params.baselines
    return (
        llm_runs(Path("."), [ICL] + [run.name for run in rec_grid(params.rec_tune)], "workspace")
        + grid_runs(Path("."), "baselines", b.models + b.text_models, b.domains, b.ks, b.seeds, "workspace")
        + grid_runs(
            Path("."),
            "references",
            REFERENCES,
            params.evaluate.test_domains,
            params.sample.ks,
            params.sample.seeds,
            "workspace",
        )
    )


def imported_runs(folder: Path = paths.IMPORTED) -> list[Run]:
    """The runs of every experiment under reports/imported/ (see tallrec.experiments)."""
    runs = []
    root = folder.resolve()
    for exp in sorted(p for p in folder.glob("*") if (p / "experiment.json").exists()):
        where = exp / "experiment.json"
        if exp.resolve().parent != root:  # a link out of the project
            raise DataError(exp, "an imported experiment must be a folder inside reports/imported/, not a link")
        meta = read_experiment(where)
        if not isinstance(meta, dict) or "llm_configs" not in meta:
            raise DataError(where, "expected an object with llm_configs (written by `tallrec import-experiments`)")
        runs += llm_runs(exp, _plain_names(meta, "llm_configs", where), exp.name)
        baselines = [b for b in _plain_names(meta, "baselines", where)]
        unknown = [b for b in baselines if b not in BASELINES]
        grid = meta.get("baseline_grid", {})
        if unknown or not isinstance(grid, dict):
            raise DataError(where, f"unknown baseline {unknown[0]!r}" if unknown else "baseline_grid must be an object")
        runs += grid_runs(
            exp, "baselines", baselines, grid.get("domains", []), grid.get("ks", []), grid.get("seeds", []), exp.name
        )
    return runs


def deduplicated(runs: list[Run]) -> list[Run]:
    """One run per (row, model, train domain, test domain, K, seed): the workspace's (this commit's own
    pipeline) where it has one, which supersedes any imported copy; the same configuration imported
    from two experiments is refused, naming both (choosing one silently let a crafted import win)."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.row, run.model, run.train_domain, run.test_domain, run.k, run.seed), []).append(run)
    chosen = []
    for group in groups.values():
        mine = [r for r in group if r.source == "workspace"]
        if not mine and len(group) > 1:
            run, other = group[0], group[1]
            raise ValueError(
                f"{paths.IMPORTED}: {run.row} trained on {run.train_domain} K={run.k} seed {run.seed} "
                f"(tested on {run.test_domain}) is imported from both {run.source} and {other.source}; "
                "remove it from one"
            )
        chosen.append((mine or group)[0])
    return chosen
