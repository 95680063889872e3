"""The paper's claims rebuilt from this repository's predictions: Table 3 (TALLRec against ICL, the six
baselines and the parameter-free references, per test domain x K), Figure 3 (AT / RT / TALLRec vs K),
Figure 4 (train domain x test domain), UAUC on the movie test set, user-bootstrap intervals and paired
p-values, and the data of the `dvc plots` definitions.

Every number is computed from predictions files (a run's scores of one test set): the pipeline's own
(metrics/predictions/) and those of `dvc exp run` experiments brought in by `tallrec import-experiments`
(reports/imported/<experiment>/). A cell with no run says "not run".

runs: which runs exist, each file checked; cells: Table 3's cells, bootstrap intervals, p-values;
markdown: the tables and results.md; figures: Figures 3 and 4 and the dvc plots data.
"""

from __future__ import annotations

from tallrec.report.cells import Cell, RowResult, build_cell, common_rows, table3_cells, table3_runs
from tallrec.report.figures import at_level, figure3, figure4, like_share_points, plot_files, variant_points
from tallrec.report.markdown import (
    ROW_NAMES,
    configurations_markdown,
    floor_lines,
    paper_markdown,
    results_markdown,
    table3_markdown,
    uauc_markdown,
)
from tallrec.report.runs import Run, deduplicated, imported_runs, workspace_runs

__all__ = [
    "ROW_NAMES",
    "Cell",
    "Run",
    "RowResult",
    "at_level",
    "build_cell",
    "common_rows",
    "configurations_markdown",
    "deduplicated",
    "figure3",
    "figure4",
    "floor_lines",
    "imported_runs",
    "like_share_points",
    "paper_markdown",
    "plot_files",
    "results_markdown",
    "table3_cells",
    "table3_markdown",
    "table3_runs",
    "uauc_markdown",
    "variant_points",
    "workspace_runs",
]
