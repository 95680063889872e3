"""report: Table 3 with UAUC, user-bootstrap intervals and paired p-values, Figures 3 and 4 and the data
of the dvc plots, from every configuration's predictions (tallrec.report) into reports/.

The outputs are one unit: all of them are built in a temporary folder, which is then renamed to
`.report-complete.tmp` (the one step that commits the run) and its entries renamed over the old ones. A run
killed while building leaves every old output; one killed while renaming is finished by the next run
before it starts, from the committed folder. reports/ also holds git-tracked files that are not the
report's (reports/imported/, grid_exp_show.md): only OUTPUTS are ever replaced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tallrec import paths
from tallrec.config import Params
from tallrec.io import remove_stale, write_json

# everything the stage writes under reports/ (dvc.yaml's outs of the stage; tests/test_dvc.py checks that)
OUTPUTS = ("results.md", "table3.md", "figure3.png", "figure4.png", paths.PLOTS.name)
COMMITTED = paths.REPORTS / ".report-complete.tmp"  # a complete set of OUTPUTS, being renamed into place
BUILDING_PREFIX, BUILDING_SUFFIX = ".report.", ".tmp"  # the folder of a run still building its outputs


def _swap_in(committed: Path) -> None:
    """Rename each output of `committed` over its old copy; run again after a kill, it finishes the rest."""
    trash = committed / ".old"  # a folder cannot be renamed over a folder: the old one goes here first
    for name in OUTPUTS:
        new, target = committed / name, paths.REPORTS / name
        if not os.path.lexists(new):
            continue  # renamed in by the run that was killed
        if target.is_dir() and not target.is_symlink():
            trash.mkdir(exist_ok=True)
            os.replace(target, trash / name)
        os.replace(new, target)
    shutil.rmtree(committed)


def recover() -> None:
    """Finish a killed run's renames, or drop what a run killed while building left; also the
    temporaries beside each output that the report wrote before its outputs were one unit."""
    if COMMITTED.is_dir():
        _swap_in(COMMITTED)
    for stale in paths.REPORTS.glob(f"{BUILDING_PREFIX}*{BUILDING_SUFFIX}"):
        shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
    for name in OUTPUTS:
        remove_stale(paths.REPORTS / name)


def main(params: Params) -> str:
    from tallrec.report import (
        configurations_markdown,
        deduplicated,
        figure3,
        figure4,
        floor_lines,
        imported_runs,
        plot_files,
        results_markdown,
        table3_cells,
        table3_markdown,
        uauc_markdown,
        workspace_runs,
    )

    paths.REPORTS.mkdir(exist_ok=True)
    recover()  # first: a bad input below must not leave a killed run's outputs half renamed
    runs = deduplicated(workspace_runs(params) + imported_runs())
    models = sorted({r.model for r in runs if r.model})
    if len(models) > 1:
        raise ValueError(
            f"{paths.IMPORTED}: runs of several backbones ({', '.join(models)}); the report compares one, "
            "remove the other experiments' folders"
        )
    boot, seed, test_domains = params.report.bootstrap, params.report.seed, params.evaluate.test_domains
    cells = table3_cells(runs, test_domains, params.sample.ks, boot, seed)
    table3 = table3_markdown(cells)
    build = Path(tempfile.mkdtemp(prefix=BUILDING_PREFIX, suffix=BUILDING_SUFFIX, dir=paths.REPORTS))
    try:
        (build / "table3.md").write_text(table3 + "\n")
        (build / "results.md").write_text(
            results_markdown(
                params, table3, uauc_markdown(cells), floor_lines(cells), configurations_markdown(runs, boot, seed)
            )
        )
        figure3(runs, test_domains, params.sample.ks, params.report.figure3_xlim, build / "figure3.png", boot, seed)
        figure4(runs, build / "figure4.png", boot, seed, test_domains, params.rec_tune.ks)
        for path, data in plot_files(runs, build / paths.PLOTS.name).items():
            write_json(data, path)
        os.replace(build, COMMITTED)
    finally:
        if build.exists():
            shutil.rmtree(build)
    _swap_in(COMMITTED)
    filled = sum(len(c.rows) for c in cells)
    return (
        f"wrote {paths.REPORTS}/results.md, table3.md, figure3.png, figure4.png and {paths.PLOTS}/ "
        f"({filled} filled row-cells)"
    )


if __name__ == "__main__":
    from tallrec.stages import run

    run(main)
