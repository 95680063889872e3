"""The report's text: Table 3, the UAUC table, the like-share floor, the paper's quoted Table 3, every
configuration's line, and results.md around them."""

from __future__ import annotations

import math
from typing import Iterable

from tallrec.config import Params
from tallrec.names import BASELINES, DOMAINS, ICL, TEXT_BASELINES, VARIANTS
from tallrec.report.cells import TABLE3_ROWS, Cell, RowResult, build_cell
from tallrec.report.runs import Run

ROW_NAMES = {
    "tallrec": "TALLRec",
    "at": "AT (alpaca-tuned only)",
    "rt": "RT (rec-tuned only)",
    ICL: "ICL (untuned LLM)",
    "gru4rec": "GRU4Rec",
    "caser": "Caser",
    "sasrec": "SASRec",
    "dros": "DROS",
    "gru_bert": "GRU-BERT",
    "dros_bert": "DROS-BERT",
    "like_share": "like-share (no parameters)",
    "popularity": "popularity (no parameters)",
}

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


def _f(x: float, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def auc_text(r: RowResult) -> str:
    spread = f" ± {_f(r.std)}" if len(r.aucs) > 1 else ""
    return f"{_f(r.mean)}{spread} (n={len(r.aucs)}) [{_f(r.ci[0], 2)}, {_f(r.ci[1], 2)}]"


def table3_markdown(cells: list[Cell], rows: Iterable[str] = TABLE3_ROWS) -> str:
    """Table 3: rows x (domain, K); a cell is mean ± std over seeds (n seeds) [95 % user-bootstrap CI],
    or "not run"."""
    head = "| row | " + " | ".join(f"{c.domain} K={c.k}" for c in cells) + " |"
    lines = [head, "|---|" + "---|" * len(cells)]
    for name in rows:
        texts = [auc_text(c.rows[name]) if name in c.rows else "not run" for c in cells]
        if name in TEXT_BASELINES and all(t == "not run" for t in texts):
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


def uauc_markdown(cells: list[Cell], rows: Iterable[str] = TABLE3_ROWS) -> str:
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
        (r for r in runs if r.row in (*VARIANTS, ICL)),
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
        "| row (quoted from the paper) | " + " | ".join(f"{d} K={k}" for d in DOMAINS for k in PAPER_KS) + " |",
        "|---|" + "---|" * (len(DOMAINS) * len(PAPER_KS)),
    ]
    for name in ("tallrec", *BASELINES):
        vals = [PAPER_TABLE3.get((name, d), (None,) * 3)[i] for d in DOMAINS for i in range(len(PAPER_KS))]
        lines.append(
            f"| {ROW_NAMES[name]}{' (LLaMA-7B)' if name == 'tallrec' else ''} | "
            + " | ".join(_f(v) for v in vals)
            + " |"
        )
    return "\n".join(lines)


def results_markdown(params: Params, table3: str, uauc: str, floors: list[str], configurations: str) -> str:
    """reports/results.md: every table with what its numbers are."""
    return (
        "\n\n".join(
            [
                "# Results (generated by `dvc repro report`; do not edit)",
                "## Table 3: test AUC",
                "Each cell: mean ± std over training seeds (n = seeds) [95 % CI from a bootstrap over test users, "
                f"{params.report.bootstrap} resamples, seed {params.report.seed}]. "
                "All rows of a cell are scored on the same test rows "
                "(those every run of the cell scored). "
                "The p-value compares TALLRec with the best other row of the cell, "
                "paired: both rows' seed-mean AUC on the same resampled users.",
                table3,
                "## UAUC: per-user AUC on the movie test set",
                "UAUC: each user's own AUC, averaged over the users who have both a liked and a disliked test row, "
                "weighted by their "
                "number of rows (mean over seeds).",
                uauc,
                "## Who clears the like-share floor",
                "\n".join(floors) or "No like-share reference was run.",
                "## The paper's Table 3 (quoted from Bao et al. 2023, not measured here)",
                paper_markdown(),
                "## Every LLM configuration, and where its run comes from",
                "The workspace is this commit's `dvc repro`; "
                "a name is a `dvc exp run` experiment imported into reports/imported/.",
                configurations,
            ]
        )
        + "\n"
    )
