"""The report stage's outputs are one unit: a report killed part way leaves the previous run's files,
all of them, and the next run leaves no temporaries."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl

from tallrec import paths

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("results.md", "table3.md", "figure3.png", "figure4.png", "plots")  # dvc.yaml's report outs


def write_workspace(strength: float) -> None:
    """The untuned backbone and one TALLRec configuration, scored on a small movie test set."""
    users = np.repeat([f"u{i}" for i in range(8)], 5)
    labels = np.tile([1, 0, 1, 0, 1], 8)
    for config, variant, noise in (("icl", "icl", 1), ("tallrec_movie_k64_seed0", "tallrec", 2)):
        scores = labels * strength + np.random.default_rng(noise).random(len(labels))
        predictions = paths.llm_predictions_path(config, "movie")
        predictions.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame(
            {
                "user": users,
                "target_item_id": [f"i{r}" for r in range(len(users))],
                "label": labels.astype(np.int8),
                "score": scores,
            }
        ).write_parquet(predictions)
        summary = paths.llm_summary_path(config)
        summary.parent.mkdir(parents=True, exist_ok=True)
        trained = variant != "icl"
        summary.write_text(
            json.dumps(
                {
                    "variant": variant,
                    "train_domain": "movie" if trained else None,
                    "k": 64 if trained else None,
                    "seed": 0 if trained else None,
                    "model": "m",
                    "auc": {"movie": 0.5},
                }
            )
        )


def report(kill_after_figure3: bool = False) -> subprocess.CompletedProcess:
    """The report stage in a subprocess; with `kill_after_figure3` it SIGKILLs itself as figure 4 begins."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from tallrec import report
        from tallrec.config import Params, with_changes
        from tallrec.stages import report as stage

        if {kill_after_figure3}:
            def killed(*args, **kwargs):
                os.kill(os.getpid(), signal.SIGKILL)
            report.figure4 = killed
        stage.main(with_changes(Params(), {{"report": {{"bootstrap": 20}}}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TALLREC_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)


def digests() -> dict[str, str]:
    out = {}
    for name in OUTPUTS:
        path = paths.REPORTS / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        out[name] = hashlib.md5(b"".join(p.read_bytes() for p in files if p.exists())).hexdigest()
    return out


def leftovers() -> list[str]:
    return sorted(str(p) for p in paths.REPORTS.rglob(".*") if p != paths.IMPORTED)


def test_a_killed_report_leaves_the_old_outputs_whole_and_the_next_run_no_temporaries(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / paths.IMPORTED).mkdir(parents=True)
    (tmp_path / paths.IMPORTED / "kept.txt").write_text("git-tracked, not the report's")
    write_workspace(strength=0.3)
    first = report()
    assert first.returncode == 0, first.stderr
    old = digests()

    write_workspace(strength=2.0)  # other predictions: every output changes
    killed = report(kill_after_figure3=True)
    assert killed.returncode == -9, killed.stderr
    assert digests() == old  # not results.md / table3.md / figure3.png of one run and figure4.png of the other

    again = report()
    assert again.returncode == 0, again.stderr
    new = digests()
    assert all(new[name] != old[name] for name in OUTPUTS)
    assert leftovers() == []
    assert (tmp_path / paths.IMPORTED / "kept.txt").read_text() == "git-tracked, not the report's"


def test_a_run_killed_while_renaming_is_finished_by_the_next_from_its_complete_set(tmp_path, monkeypatch):
    from tallrec.stages.report import COMMITTED, recover

    monkeypatch.chdir(tmp_path)
    (tmp_path / paths.IMPORTED).mkdir(parents=True)
    for name in OUTPUTS:  # the old outputs; the killed run had renamed results.md in already
        (paths.REPORTS / name).mkdir() if name == "plots" else (paths.REPORTS / name).write_text("old")
    (paths.PLOTS / "gone.json").write_text("old")
    COMMITTED.mkdir()
    for name in OUTPUTS[1:]:
        (COMMITTED / name).mkdir() if name == "plots" else (COMMITTED / name).write_text("new")
    (COMMITTED / "plots" / "auc_vs_k.json").write_text("new")
    (paths.REPORTS / "results.md").write_text("new")
    (paths.REPORTS / ".report.x1.tmp").mkdir()  # a run killed while building
    (paths.REPORTS / ".figure3.png.x2.tmp").write_text("")  # the report's temporaries before it was one unit

    recover()
    assert [(paths.REPORTS / n).read_text() for n in OUTPUTS if n != "plots"] == ["new"] * 4
    assert [p.name for p in paths.PLOTS.iterdir()] == ["auc_vs_k.json"]
    assert leftovers() == []
