"""The paper's claims rebuilt from this repository's predictions: Table 3 (TALLRec against ICL, the six
baselines and the parameter-free references, per test domain x K), Figure 3 (AT / RT / TALLRec vs K),
Figure 4 (train domain x test domain), UAUC on the movie test set, user-bootstrap intervals and paired
p-values, and the data of the `dvc plots` definitions.

Every number is computed here from predictions files (a run's scores of one test set): the pipeline's
own (metrics/predictions/) and those of `dvc exp run` experiments brought in by `tallrec import-experiments`
(reports/imported/<experiment>/). A cell with no run says "not run".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import polars as pl

from tallrec import paths
from tallrec.config import Params, rec_grid
from tallrec.io import DataError, read_json
from tallrec.metrics import UserBootstrap, auc, uauc
from tallrec.names import DOMAINS
from tallrec.references import REFERENCES

ROW_NAMES = {
    "tallrec": "TALLRec",
    "at": "AT (alpaca-tuned only)",
    "rt": "RT (rec-tuned only)",
    "icl": "ICL (untuned LLM)",
    "gru4rec": "GRU4Rec",
    "caser": "Caser",
    "sasrec": "SASRec",
    "dros": "DROS",
    "gru_bert": "GRU-BERT",
    "dros_bert": "DROS-BERT",
    "like_share": "like-share (no parameters)",
    "popularity": "popularity (no parameters)",
}
BASELINES = ("gru4rec", "caser", "sasrec", "dros", "gru_bert", "dros_bert")  # the paper's order
OTHER_ROWS = ("icl", *BASELINES, *REFERENCES)
KEY = ("user", "target_item_id")

# Quoted from the paper (Bao et al., RecSys 2023, Table 3: test AUC, TALLRec on LLaMA-7B), not measured
# here. SASRec's book row is not quoted.
PAPER_TABLE3 = {
    ("tallrec", "movie"): (0.672, 0.675, 0.720),
    ("tallrec", "book"): (0.564, 0.604, 0.644),
    ("gru4rec", "movie"): (0.4907, 0.4987, 0.5289),
    ("gru4rec", "book"): (0.4895, 0.4964, 0.4986),
    ("caser", "movie"): (0.4968, 0.5106, 0.5420),
    ("caser", "book"): (0.4984, 0.4972, 0.4957),
    ("sasrec", "movie"): (0.5043, 0.5048, 0.5225),
    ("dros", "movie"): (0.5076, 0.5154, 0.5407),
    ("dros", "book"): (0.4928, 0.4913, 0.4913),
    ("gru_bert", "movie"): (0.5085, 0.5165, 0.5344),
    ("gru_bert", "book"): (0.5007, 0.4964, 0.4979),
    ("dros_bert", "movie"): (0.5021, 0.5171, 0.5394),
    ("dros_bert", "book"): (0.5007, 0.4898, 0.5020),
}
PAPER_KS = (16, 64, 256)


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


# ------------------------------------------------------------------------------------------ loading


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


def llm_runs(root: Path, configs: Iterable[str], source: str) -> list[Run]:
    """The runs of LLM configurations whose summary (metrics/llm/<config>.json) is under `root`."""
    runs = []
    for config in configs:
        summary_path = root / paths.llm_summary_path(config)
        summary = read_json(summary_path)
        needed = ("variant", "train_domain", "k", "seed", "model", "auc")
        if (
            not isinstance(summary, dict)
            or any(key not in summary for key in needed)
            or not isinstance(summary["auc"], dict)
        ):
            raise DataError(summary_path, f"not an evaluate summary (needs {', '.join(needed)})")
        if summary["variant"] not in ROW_NAMES or not set(summary["auc"]) <= set(DOMAINS):
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
        llm_runs(Path("."), ["icl"] + [run.name for run in rec_grid(params.rec_tune)], "workspace")
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
        meta = read_json(where)
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


# ------------------------------------------------------------------------------------------ cells


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
        if run.test_domain != domain or run.row not in ("tallrec", *OTHER_ROWS):
            continue
        if run.row == "icl" or (run.k == k and run.train_domain in (domain, None)):
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


# ------------------------------------------------------------------------------------------ markdown


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def auc_text(r: RowResult) -> str:
    spread = f" ± {_f(r.std)}" if len(r.aucs) > 1 else ""
    return f"{_f(r.mean)}{spread} (n={len(r.aucs)}) [{_f(r.ci[0], 2)}, {_f(r.ci[1], 2)}]"


def table3_markdown(cells: list[Cell], rows: Iterable[str] = ("tallrec", *OTHER_ROWS)) -> str:
    """Table 3: rows x (domain, K); a cell is mean ± std over seeds (n seeds) [95 % user-bootstrap CI],
    or "not run"."""
    head = "| row | " + " | ".join(f"{c.domain} K={c.k}" for c in cells) + " |"
    lines = [head, "|---|" + "---|" * len(cells)]
    for name in rows:
        texts = [auc_text(c.rows[name]) if name in c.rows else "not run" for c in cells]
        if name in ("gru_bert", "dros_bert") and all(t == "not run" for t in texts):
            texts = ["not run"] * len(cells)
        lines.append(f"| {ROW_NAMES[name]} | " + " | ".join(texts) + " |")
    lines.append(
        "| best other row | " + " | ".join(ROW_NAMES[c.best_other] if c.best_other else "–" for c in cells) + " |"
    )
    lines.append("| p, TALLRec vs best other | " + " | ".join(_f(c.p_value, 3) for c in cells) + " |")
    lines.append(
        "| test rows / users | " + " | ".join(f"{c.n_rows} / {c.n_users}" if c.n_rows else "–" for c in cells) + " |"
    )
    return "\n".join(lines)


def uauc_markdown(cells: list[Cell], rows: Iterable[str] = ("tallrec", *OTHER_ROWS)) -> str:
    """UAUC (mean over seeds) and AUC side by side for the domains whose users have several test rows."""
    cells = [c for c in cells if c.n_rows]
    multi = [c for c in cells if c.n_rows > c.n_users]
    lines = [
        "| row | " + " | ".join(f"{c.domain} K={c.k} UAUC / AUC" for c in multi) + " |",
        "|---|" + "---|" * len(multi),
    ]
    for name in rows:
        if any(name in c.rows for c in multi):
            lines.append(
                f"| {ROW_NAMES[name]} | "
                + " | ".join(
                    f"{_f(c.rows[name].uauc)} / {_f(c.rows[name].mean)}" if name in c.rows else "not run" for c in multi
                )
                + " |"
            )
    lines.append(
        "| users with both labels / users / rows | "
        + " | ".join(
            f"{max((r.uauc_users for r in c.rows.values()), default=0)} / {c.n_users} / {c.n_rows}" for c in multi
        )
        + " |"
    )
    single = sorted({c.domain for c in cells if c.n_rows == c.n_users})
    note = f"\n\nUAUC is undefined for {', '.join(single)}: every test user there has one row." if single else ""
    return "\n".join(lines) + note


def configurations_markdown(runs: list[Run], bootstrap: int, seed: int) -> str:
    """Every LLM configuration on every test set it was scored on (cross-domain and the AT / RT variants
    included), each on its own test rows: AUC [95 % user-bootstrap CI], UAUC where users have several rows."""
    lines = [
        "| variant | trained on | K | seed | tested on | rows / users | AUC [95 % CI] "
        "| UAUC (users with both labels) | from |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    llm = sorted(
        (r for r in runs if r.row in ("tallrec", "at", "rt", "icl")),
        key=lambda r: (r.row, r.train_domain or "", r.k or 0, r.seed or 0, r.test_domain),
    )
    for run in llm:
        cell = build_cell(run.test_domain, run.k or 0, {run.row: [run]}, bootstrap, seed)
        r = cell.rows[run.row]
        u = f"{_f(r.uauc)} ({r.uauc_users})" if cell.n_rows > cell.n_users else "undefined (one row per user)"
        lines.append(
            f"| {run.row} | {run.train_domain or '–'} | {run.k or '–'} | {'–' if run.seed is None else run.seed} | "
            f"{run.test_domain} | {cell.n_rows} / {cell.n_users} | {_f(r.mean)} [{_f(r.ci[0], 2)}, {_f(r.ci[1], 2)}] | "
            f"{u} | {run.source} |"
        )
    return "\n".join(lines)


def floor_lines(cells: list[Cell]) -> list[str]:
    """Per cell, which rows score above the like-share reference on AUC and on UAUC."""
    out = []
    for c in cells:
        floor = c.rows.get("like_share")
        if floor is None:
            continue
        above = [ROW_NAMES[r.row] for r in c.rows.values() if r.row != "like_share" and r.mean > floor.mean]
        text = f"- {c.domain} K={c.k}: like-share AUC {_f(floor.mean)}; above it: {', '.join(above) or 'none'}"
        if c.n_rows > c.n_users:
            above_u = [ROW_NAMES[r.row] for r in c.rows.values() if r.row != "like_share" and r.uauc > floor.uauc]
            text += f". UAUC {_f(floor.uauc)}; above it: {', '.join(above_u) or 'none'}"
        out.append(text)
    return out


def paper_markdown() -> str:
    lines = [
        "| row (quoted from the paper) | "
        + " | ".join(f"{d} K={k}" for d in ("movie", "book") for k in PAPER_KS)
        + " |",
        "|---|" + "---|" * 6,
    ]
    for name in ("tallrec", *BASELINES):
        vals = [PAPER_TABLE3.get((name, d), (None,) * 3)[i] for d in ("movie", "book") for i in range(3)]
        lines.append(
            f"| {ROW_NAMES[name]}{' (LLaMA-7B)' if name == 'tallrec' else ''} | "
            + " | ".join(_f(v) for v in vals)
            + " |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ figures


def variant_points(
    runs: list[Run], variant: str, domain: str, boot_n: int, seed: int
) -> list[tuple[int, float, float, float]]:
    """(K, mean AUC over seeds, CI low, CI high) of one variant trained and tested on `domain`."""
    points = []
    for k in sorted({r.k for r in runs if r.row == variant and r.test_domain == domain and r.train_domain == domain}):
        chosen = [
            r for r in runs if r.row == variant and r.test_domain == domain and r.train_domain == domain and r.k == k
        ]
        cell = build_cell(domain, k, {variant: chosen}, boot_n, seed)
        r = cell.rows[variant]
        points.append((k, r.mean, *r.ci))
    return points


def at_level(runs: list[Run], domain: str, boot_n: int, seed: int) -> tuple[float, float, float] | None:
    """(AUC, CI low, CI high) of AT on `domain`. AT is stage 1 alone: the K, train domain and seed in its
    configuration name do not change its adapter, so it is one level for every K, from the one AT run
    scored on the most rows of `domain`."""
    chosen = max(
        (r for r in runs if r.row == "at" and r.test_domain == domain), key=lambda r: r.frame.height, default=None
    )
    if chosen is None:
        return None
    row = build_cell(domain, 0, {"at": [chosen]}, boot_n, seed).rows["at"]
    return row.mean, *row.ci


def like_share_points(runs: list[Run], domain: str) -> list[tuple[int, float]]:
    """(K, like-share AUC) on the rows that Figure 3's point at K was scored on (TALLRec's, else RT's),
    as its Table 3 cell measures it: a floor from the full test set would not compare with a point
    scored on a seeded subset."""
    points = []
    anchor = next((v for v in ("tallrec", "rt") if any(r.row == v and r.test_domain == domain for r in runs)), None)
    for k in sorted({r.k for r in runs if r.row == anchor and r.test_domain == domain and r.train_domain == domain}):
        chosen = [
            r for r in runs if r.row == anchor and r.test_domain == domain and r.train_domain == domain and r.k == k
        ]
        share = [
            r for r in runs if r.row == "like_share" and r.test_domain == domain and r.k == k and r.seed in (None, 0)
        ]
        if share:
            rows = common_rows([chosen, share[:1]])
            points.append((k, auc(rows["label"].to_numpy(), score_matrix(rows, share[:1])[:, 0])))
    return points


def _save(fig, title: str, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")  # `out` may be a temporary name without the .png suffix
    plt.close(fig)


def figure3(runs: list[Run], domains: list[str], out: Path, boot_n: int, seed: int) -> None:
    """AUC vs K for RT and TALLRec, AT as one level (it has no K), one panel per test domain, 95 %
    user-bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 (matplotlib.ticker.NullLocator)

    fig, axes = plt.subplots(1, len(domains), figsize=(5 * len(domains), 4), squeeze=False)
    for ax, domain in zip(axes[0], domains):
        level = at_level(runs, domain, boot_n, seed)
        if level:
            ax.axhline(level[0], color="tab:orange", lw=1.5, label=f"{ROW_NAMES['at']}: no K")
            ax.axhspan(level[1], level[2], color="tab:orange", alpha=0.12)
        for variant, color in (("rt", "tab:green"), ("tallrec", "tab:blue")):
            pts = variant_points(runs, variant, domain, boot_n, seed)
            if pts:
                ks, means, lo, hi = zip(*pts)
                ax.plot(ks, means, "o-", color=color, label=ROW_NAMES[variant])
                ax.fill_between(ks, lo, hi, color=color, alpha=0.15)
                ax.errorbar(
                    ks, means, yerr=[np.subtract(means, lo), np.subtract(hi, means)], fmt="none", color=color, capsize=3
                )
        floor = like_share_points(runs, domain)
        if floor:
            ax.plot(*zip(*floor), color="black", lw=1, ls="--", marker="_", label=ROW_NAMES["like_share"])
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set(
            xticks=list(PAPER_KS),
            xticklabels=[str(k) for k in PAPER_KS],
            xlim=(12, 340),
            ylim=(0.3, 0.85),
            xlabel="K (rec-tuning samples)",
            ylabel="test AUC",
            title=f"trained and tested on {domain}",
        )
        if level or any(line.get_label() in (ROW_NAMES[v] for v in ("rt", "tallrec")) for line in ax.get_lines()):
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    _save(fig, "Figure 3: AT / RT / TALLRec (bands: 95 % user-bootstrap CI)", out)


def figure4(runs: list[Run], out: Path, boot_n: int, seed: int) -> None:
    """Grouped bars: TALLRec trained on movie / book / both, tested on movie and on book, one panel per K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tallrec = [r for r in runs if r.row == "tallrec"]
    ks = sorted({r.k for r in tallrec}) or [64]
    fig, axes = plt.subplots(1, len(ks), figsize=(4.5 * len(ks), 4), squeeze=False)
    trains, tests = ("movie", "book", "both"), ("movie", "book")
    for ax, k in zip(axes[0], ks):
        for i, train in enumerate(trains):
            for j, test in enumerate(tests):
                chosen = [r for r in tallrec if r.k == k and r.train_domain == train and r.test_domain == test]
                if not chosen:
                    continue
                r = build_cell(test, k, {"tallrec": chosen}, boot_n, seed).rows["tallrec"]
                x = j + (i - 1) * 0.27
                ax.bar(x, r.mean, 0.25, color=("tab:red", "tab:purple", "tab:gray")[i], label=f"trained on {train}")
                ax.errorbar(x, r.mean, yerr=[[r.mean - r.ci[0]], [r.ci[1] - r.mean]], color="black", capsize=3)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(
            xticks=range(len(tests)),
            xticklabels=[f"tested on {t}" for t in tests],
            xlim=(-0.5, 1.5),
            ylim=(0.2, 0.95),
            ylabel="test AUC",
            title=f"K={k}",
        )
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            uniq = dict(zip(labels, handles))
            ax.legend(
                uniq.values(), uniq.keys(), loc="upper center", ncol=3, fontsize=7, columnspacing=0.8, handlelength=1.2
            )  # above the bars
        else:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    _save(fig, "Figure 4: cross-domain TALLRec (error bars: 95 % user-bootstrap CI)", out)


# ------------------------------------------------------------------------------------------ dvc plots


def roc_points(labels: np.ndarray, scores: np.ndarray) -> list[dict[str, float]]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return [{"fpr": round(float(f), 5), "tpr": round(float(t), 5)} for f, t in zip(fpr, tpr)]


def plot_files(runs: list[Run], folder: Path) -> dict[Path, object]:
    """The data of the dvc plots definitions: one ROC file per LLM configuration and test domain (first
    seed), and AUC-vs-K rows per (variant, train domain, test domain)."""
    files: dict[Path, object] = {}
    auc_rows = []
    for r in runs:
        if r.row in ("tallrec", "at", "rt", "icl"):
            name = "icl" if r.row == "icl" else f"{r.row}_{r.train_domain}_k{r.k}_seed{r.seed}"
            labels, scores = r.frame["label"].to_numpy(), r.frame["score"].to_numpy()
            if r.seed in (None, 0):
                files[folder / "roc" / f"{name}_on_{r.test_domain}.json"] = roc_points(labels, scores)
            if r.row != "icl":
                auc_rows.append(
                    {
                        "series": f"{r.row} {r.train_domain}->{r.test_domain}",
                        "k": r.k,
                        "seed": r.seed,
                        "auc": round(auc(labels, scores), 5),
                        "rows": r.frame.height,
                        "source": r.source,
                    }
                )
    files[folder / "auc_vs_k.json"] = sorted(auc_rows, key=lambda x: (x["series"], x["k"], x["seed"]))
    return files
