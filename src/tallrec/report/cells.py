"""Table 3's cells: per test domain x K, every row's seed-mean AUC, UAUC and 95 % user-bootstrap
interval on the test rows every run of the cell scored, and TALLRec's paired p-value against the best
other row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import polars as pl

from tallrec.metrics import UserBootstrap, auc, uauc
from tallrec.names import BASELINES, ICL
from tallrec.references import REFERENCES
from tallrec.report.runs import KEY, Run

OTHER_ROWS = (ICL, *BASELINES, *REFERENCES)  # Table 3's rows after TALLRec, in its order
TABLE3_ROWS = ("tallrec", *OTHER_ROWS)


@dataclass
class RowResult:
    """One row of one cell, every number on the cell's test rows."""

    row: str
    seeds: list[int | None]
    aucs: list[float]  # per seed
    ci: tuple[float, float]  # 95 % user-bootstrap interval of the seed-mean AUC
    uauc: float  # mean over seeds; NaN where every user has one row
    uauc_users: int
    sources: list[str]

    @property
    def mean(self) -> float:
        return float(np.mean(self.aucs))

    @property
    def std(self) -> float:
        return float(np.std(self.aucs, ddof=1)) if len(self.aucs) > 1 else float("nan")


@dataclass
class Cell:
    """One test domain x K of Table 3: every row that has runs there, measured on the same test rows."""

    domain: str
    k: int
    n_rows: int = 0
    n_users: int = 0
    rows: dict[str, RowResult] = field(default_factory=dict)
    best_other: str | None = None
    p_value: float = float("nan")  # TALLRec against best_other, paired user bootstrap


def table3_runs(runs: list[Run], domain: str, k: int) -> dict[str, list[Run]]:
    """Per Table 3 row, its runs in the cell: TALLRec trained on the test domain, ICL at every K,
    baselines and references at this K. (One backbone per report: the runs here are all smollm2-135m.)"""
    out: dict[str, list[Run]] = {}
    for run in runs:
        if run.test_domain != domain or run.row not in TABLE3_ROWS:
            continue
        if run.row == ICL or (run.k == k and run.train_domain in (domain, None)):
            out.setdefault(run.row, []).append(run)
    return out


def common_rows(groups: Iterable[list[Run]]) -> pl.DataFrame:
    """The test rows every run of the cell scored (user, target_item_id, label), in a fixed order."""
    frames = [r.frame.select(*KEY, "label") for runs in groups for r in runs]
    common = frames[0]
    for f in frames[1:]:
        common = common.join(f.select(KEY), on=KEY, how="semi")
    return common.sort(KEY)


def score_matrix(rows: pl.DataFrame, runs: list[Run]) -> np.ndarray:
    """rows x runs: each run's scores on the cell's rows."""
    cols = [rows.join(r.frame.select(*KEY, "score"), on=KEY, how="left")["score"].to_numpy() for r in runs]
    return np.column_stack(cols)


def build_cell(domain: str, k: int, by_row: dict[str, list[Run]], bootstrap: int, seed: int) -> Cell:
    cell = Cell(domain, k)
    if not by_row:
        return cell
    rows = common_rows(by_row.values())
    users, labels = rows["user"].to_numpy(), rows["label"].to_numpy()
    cell.n_rows, cell.n_users = rows.height, len(np.unique(users))
    boot = UserBootstrap(users, labels, bootstrap, seed)
    matrices = {}
    for name, runs in by_row.items():
        runs = sorted(runs, key=lambda r: (r.seed is None, r.seed))
        m = matrices[name] = score_matrix(rows, runs)
        per_seed_uauc = [uauc(users, labels, m[:, j]) for j in range(m.shape[1])]
        ci = boot.interval(m) if len(np.unique(labels)) > 1 else (float("nan"), float("nan"))  # one class: no AUC
        cell.rows[name] = RowResult(
            name,
            [r.seed for r in runs],
            [auc(labels, m[:, j]) for j in range(m.shape[1])],
            ci,
            float(np.mean([u for u, _ in per_seed_uauc])),
            max(n for _, n in per_seed_uauc),
            sorted({r.source for r in runs}),
        )
    others = [r for r in cell.rows.values() if r.row != "tallrec"]
    if "tallrec" in cell.rows and others:
        cell.best_other = max(others, key=lambda r: r.mean).row
        cell.p_value = boot.paired_p(matrices["tallrec"], matrices[cell.best_other])
    return cell


def table3_cells(runs: list[Run], domains: Iterable[str], ks: Iterable[int], bootstrap: int, seed: int) -> list[Cell]:
    return [build_cell(d, k, table3_runs(runs, d, k), bootstrap, seed) for d in domains for k in ks]
