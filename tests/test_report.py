"""The report's table builder on hand-made predictions whose numbers are known."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from tallrec.io import DataError
from tallrec.metrics import auc
from tallrec.report import (
    Run,
    at_level,
    build_cell,
    common_rows,
    deduplicated,
    figure3,
    figure4,
    floor_lines,
    imported_runs,
    table3_cells,
    table3_markdown,
    table3_runs,
    uauc_markdown,
)

USERS = np.repeat([f"u{i}" for i in range(8)], 5)
LABELS = np.tile([1, 0, 1, 0, 1], 8)


def frame(scores, rows=None) -> pl.DataFrame:
    rows = np.arange(len(USERS)) if rows is None else np.asarray(rows)
    return pl.DataFrame(
        {
            "user": USERS[rows],
            "target_item_id": [f"i{r}" for r in rows],
            "label": LABELS[rows].astype(np.int8),
            "score": np.asarray(scores, dtype=np.float64),
        }
    )


def noisy(seed: int, strength: float) -> np.ndarray:
    return LABELS * strength + np.random.default_rng(seed).random(len(LABELS))


def test_a_cell_holds_seed_means_stds_and_a_paired_p_value():
    runs = [Run("tallrec", "movie", frame(noisy(s, 2.0)), "movie", 64, s, "m") for s in (0, 1)]
    runs += [Run("gru4rec", "movie", frame(noisy(10 + s, 0.1)), "movie", 64, s) for s in range(3)]
    cell = build_cell("movie", 64, table3_runs(runs, "movie", 64), bootstrap=200, seed=0)
    tallrec, gru = cell.rows["tallrec"], cell.rows["gru4rec"]
    expected = [auc(LABELS, noisy(s, 2.0)) for s in (0, 1)]
    assert tallrec.aucs == pytest.approx(expected) and tallrec.mean == pytest.approx(np.mean(expected))
    assert tallrec.std == pytest.approx(np.std(expected, ddof=1))
    assert len(gru.aucs) == 3 and tallrec.seeds == [0, 1]
    assert tallrec.ci[0] <= tallrec.mean <= tallrec.ci[1]
    assert (cell.n_rows, cell.n_users) == (40, 8)
    assert cell.best_other == "gru4rec" and cell.p_value < 0.05


def test_a_cell_without_runs_says_not_run_and_icl_fills_every_k():
    runs = [
        Run("icl", "movie", frame(noisy(0, 0.5)), model="m"),
        Run("like_share", "movie", frame(noisy(1, 0.5)), "movie", 64, 0),
    ]
    cells = table3_cells(runs, ["movie", "book"], [16, 64], bootstrap=20, seed=0)
    text = table3_markdown(cells)
    icl_line = next(line for line in text.splitlines() if line.startswith("| ICL"))
    assert icl_line.count("(n=1)") == 2 and icl_line.count("not run") == 2  # movie K=16, K=64; book not run
    tallrec_line = next(line for line in text.splitlines() if line.startswith("| TALLRec"))
    assert tallrec_line.count("not run") == 4
    assert "40 / 8" in text.splitlines()[-1]
    assert not math.isnan(cells[1].rows["like_share"].mean) and cells[0].best_other is None


def test_rows_of_a_cell_are_measured_on_the_rows_every_run_scored():
    subset = np.arange(0, 40, 2)  # a seeded test subset: 20 of the 40 rows
    scores = noisy(3, 0.3)
    runs = [
        Run("tallrec", "movie", frame(noisy(0, 1.0)[subset], subset), "movie", 64, 0),
        Run("sasrec", "movie", frame(scores), "movie", 64, 0),
    ]
    cell = build_cell("movie", 64, table3_runs(runs, "movie", 64), bootstrap=10, seed=0)
    assert cell.n_rows == 20
    assert cell.rows["sasrec"].aucs[0] == pytest.approx(auc(LABELS[subset], scores[subset]))
    assert common_rows([runs]).height == 20


def test_the_full_test_set_wins_over_a_subset_of_the_same_configuration():
    small = Run("tallrec", "movie", frame(noisy(0, 1.0)[:10], np.arange(10)), "movie", 64, 0, "m", "exp-a")
    full = Run("tallrec", "movie", frame(noisy(0, 1.0)), "movie", 64, 0, "m", "workspace")
    assert deduplicated([small, full]) == [full] and deduplicated([full, small]) == [full]


def test_uauc_table_and_the_floor_name_the_rows_above_like_share():
    runs = [
        Run("tallrec", "movie", frame(noisy(0, 5.0)), "movie", 64, 0, "m"),
        Run("like_share", "movie", frame(noisy(1, 0.2)), "movie", 64, 0),
        Run("gru4rec", "book", frame(noisy(2, 0.2)[:8], np.arange(0, 40, 5) + np.arange(8) % 2), "book", 64, 0),
    ]
    cells = table3_cells(runs, ["movie", "book"], [64], bootstrap=10, seed=0)
    text = uauc_markdown(cells)
    assert "movie K=64 UAUC / AUC" in text and "book K=64" not in text.splitlines()[0]
    assert "UAUC is undefined for book" in text  # the hand-made book users have one row each
    lines = floor_lines(cells)
    assert lines[0].startswith("- movie K=64: like-share AUC") and "above it: TALLRec" in lines[0]


def test_the_figures_are_pngs_with_or_without_runs(tmp_path):
    runs = [
        Run(v, d, frame(noisy(s, 1.0)), d, k, s, "m")
        for v in ("tallrec", "rt")
        for d in ("movie", "book")
        for k in (16, 64)
        for s in (0, 1)
    ]
    runs += [
        Run("tallrec", "book", frame(noisy(7, 1.0)), "both", 64, 0, "m"),
        Run("at", "book", frame(noisy(8, 1.0)), "movie", 64, 0, "m"),
    ]
    for draw, name in (
        (lambda p: figure3(runs, ["movie", "book"], [16, 64, 256], (12, 340), p, 20, 0), "f3.png"),
        (lambda p: figure4(runs, p, 20, 0), "f4.png"),
        (lambda p: figure4([], p, 20, 0), "empty.png"),
    ):
        draw(tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_older_experiments_params_take_the_defaults_of_keys_added_since(monkeypatch):
    import dvc.api
    import yaml

    from tallrec.config import Params, as_dict
    from tallrec.experiments import _params_at

    old = as_dict(Params())
    del old["report"]
    old["rec_tune"]["ks"] = [256]
    monkeypatch.setattr(dvc.api, "read", lambda path, rev: yaml.safe_dump(old))
    params = _params_at("c4c5ee32772d64875e95224ed2d49161c7292093")
    assert params.report == Params().report and params.rec_tune.ks == (256,)
    monkeypatch.setattr(dvc.api, "read", lambda path, rev: "- a list\n")
    with pytest.raises(DataError, match=r"^params.yaml@c4c5ee3: expected a mapping of sections at the top level$"):
        _params_at("c4c5ee32772d64875e95224ed2d49161c7292093")


@pytest.mark.parametrize(
    "meta, message",
    [
        ({"baselines": []}, r"missing key 'llm_configs'"),
        ({"llm_configs": [], "baseline_grid": {"ks": 5}}, r"baseline_grid.ks: expected a list, got 5"),
        (
            {"llm_configs": [], "baseline_grid": {"domains": ["movie"], "ks": ["16"], "seeds": [0]}},
            r"baseline_grid.ks\[0\]: expected an integer, got \"16\"",
        ),
        ({"llm_configs": [], "baselines": [1]}, r"baselines\[0\]: expected a text, got 1"),
        ({"llm_configs": [], "test_size": "all"}, r"test_size: expected an integer or null, got \"all\""),
        ([1, 2], r"expected an object with llm_configs, got \[1, 2\]"),
    ],
)
def test_an_imported_experiment_json_of_the_wrong_shape_is_one_line_naming_the_key(tmp_path, meta, message):
    """`"ks": 5` in an imported experiment.json was a TypeError traceback; `"ks": ["16"]` silently
    found no baseline runs."""
    import json

    (tmp_path / "crafted").mkdir()
    (tmp_path / "crafted" / "experiment.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"crafted/experiment.json: " + message) as e:
        imported_runs(tmp_path)
    assert "\n" not in str(e.value)


def test_every_configuration_gets_its_own_line_with_uauc_where_defined():
    from tallrec.report import configurations_markdown

    runs = [
        Run("rt", "movie", frame(noisy(0, 1.0)), "movie", 64, 0, "m", "exp-a"),
        Run("tallrec", "book", frame(noisy(1, 1.0)[:8], np.arange(0, 40, 5) + np.arange(8) % 2), "movie", 64, 0, "m"),
    ]
    text = configurations_markdown(runs, bootstrap=10, seed=0).splitlines()
    assert len(text) == 4
    assert text[2].startswith("| rt | movie | 64 | 0 | movie | 40 / 8 |") and text[2].endswith("| exp-a |")
    assert "undefined (one row per user)" in text[3] and "| movie | 64 | 0 | book | 8 / 8 |" in text[3]


def test_at_is_one_level_whatever_k_train_domain_and_seed_its_name_carries():
    """AT is stage 1 alone: a run named at_movie_k64_seed0 is AT for every K and for the book panel too;
    of its runs the one scored on the most rows counts."""
    full, part = frame(noisy(3, 1.0)), frame(noisy(4, 1.0)[:20], rows=range(20))
    runs = [
        Run("at", "book", part, "book", 16, 1, "m"),
        Run("at", "book", full, "movie", 64, 0, "m"),
        Run("rt", "book", frame(noisy(5, 9.0)), "book", 64, 0, "m"),
    ]
    value, low, high = at_level(runs, "book", 50, 0)
    assert value == pytest.approx(auc(LABELS, noisy(3, 1.0)))
    assert low <= value <= high
    assert at_level(runs, "movie", 50, 0) is None


def test_figure3_draws_the_table_cells_and_like_share_on_the_rows_each_point_was_scored_on(tmp_path, monkeypatch):
    """Figure 3 drew like-share from the full test sets while the K=256 book point was scored on 200 rows
    (0.711 there against 0.685 on the point's rows): the figure showed the opposite of the table."""
    from tallrec import report
    from tallrec.report import figures

    subset = np.arange(0, 40, 2)  # the TALLRec points: a seeded 20-row subset of the 40 test rows
    share = noisy(7, 0.4)
    share[subset] = noisy(8, 0.05)[subset]  # like-share ranks the subset worse than the whole set
    runs = [
        Run("tallrec", "movie", frame(noisy(s, 0.6)[subset], subset), "movie", k, s, "m")
        for k in (16, 64)
        for s in (0, 1)
    ]
    runs += [Run("like_share", "movie", frame(share), "movie", k, 0) for k in (16, 64)]
    drawn = {}
    monkeypatch.setattr(
        figures,
        "_save",
        lambda fig, title, out: drawn.update(
            {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fig.axes[0].get_lines()}
        ),
    )
    figure3(runs, ["movie"], [16, 64, 256], (12, 340), tmp_path / "f.png", 50, 0)
    cells = {c.k: c for c in table3_cells(runs, ["movie"], [16, 64], 50, 0)}
    ks, means = drawn[report.ROW_NAMES["tallrec"]]
    assert ks == [16, 64] and means == pytest.approx([cells[k].rows["tallrec"].mean for k in ks])
    floor_ks, floor = drawn[report.ROW_NAMES["like_share"]]
    assert auc(LABELS[subset], share[subset]) != pytest.approx(auc(LABELS, share), abs=0.02)
    assert floor_ks == [16, 64] and floor == pytest.approx([cells[k].rows["like_share"].mean for k in ks])
    assert floor == pytest.approx([auc(LABELS[subset], share[subset])] * 2)


def _import(folder, name, configs, frames, baselines=()):
    """An experiment folder as `tallrec import-experiments` writes it, with the given predictions."""
    import json

    exp = folder / name
    for config, (variant, seed, df) in zip(configs, frames):
        (exp / "metrics" / "predictions" / "llm" / config).mkdir(parents=True)
        df.write_parquet(exp / "metrics" / "predictions" / "llm" / config / "movie.parquet")
        (exp / "metrics" / "llm" / f"{config}.json").parent.mkdir(parents=True, exist_ok=True)
        (exp / "metrics" / "llm" / f"{config}.json").write_text(
            json.dumps(
                {
                    "variant": variant,
                    "train_domain": "movie",
                    "k": 64,
                    "seed": seed,
                    "model": "m",
                    "auc": {"movie": 0.5},
                }
            )
        )
    (exp / "experiment.json").write_text(
        json.dumps({"llm_configs": list(configs), "baselines": list(baselines), "baseline_grid": {}})
    )
    return exp


@pytest.mark.parametrize(
    "crafted, message",
    [
        (
            "duplicate",
            r"tallrec trained on movie K=64 seed 1 .* imported from both a-real and z-crafted; remove it from one",
        ),
        ("nan", r"z-crafted/.*movie.parquet: score nan \(user u0\): scores must be finite numbers"),
        ("label", r"z-crafted/.*movie.parquet: label 2 \(user u0\): labels must be 0 or 1"),
        ("traversal", r"z-crafted/experiment.json: llm_configs must be a list of plain names"),
        ("list", r"z-crafted/experiment.json: expected an object with llm_configs"),
        ("no_score", r"z-crafted/.*movie.parquet: missing column 'score'"),
        ("k_text", r"z-crafted/.*tallrec_movie_k64_seed1.json: k: expected .*, got \"64\""),
        ("auc_list", r"z-crafted/.*tallrec_movie_k64_seed1.json: auc: expected .*, got \[0.5\]"),
        ("no_model", r"z-crafted/.*tallrec_movie_k64_seed1.json: missing key 'model'"),
    ],
)
def test_a_crafted_import_is_refused_in_one_line_never_chosen(tmp_path, crafted, message):
    """A crafted import (the seed-1 configuration again, scores = labels, more rows) replaced the real
    one because "most rows wins": TALLRec movie K=64 went from 0.658 to 0.741."""
    import json

    from tallrec.io import DataError
    from tallrec.report import deduplicated, imported_runs

    _import(tmp_path, "a-real", ["tallrec_movie_k64_seed1"], [("tallrec", 1, frame(noisy(1, 0.3)))])
    fake = frame(LABELS.astype(float))
    if crafted == "nan":
        fake = fake.with_columns(score=pl.Series([float("nan")] * fake.height))
    elif crafted == "label":
        fake = fake.with_columns(label=pl.Series([2] * fake.height, dtype=pl.Int8))
    elif crafted == "no_score":
        fake = fake.drop("score")
    exp = _import(tmp_path, "z-crafted", ["tallrec_movie_k64_seed1"], [("tallrec", 1, fake)])
    if crafted == "traversal":
        (exp / "experiment.json").write_text(json.dumps({"llm_configs": ["../../../etc/x"], "baselines": []}))
    elif crafted == "list":
        (exp / "experiment.json").write_text("[1, 2]")
    elif crafted in ("k_text", "auc_list", "no_model"):
        summary = exp / "metrics" / "llm" / "tallrec_movie_k64_seed1.json"
        meta = json.loads(summary.read_text())
        meta = {"k_text": {**meta, "k": "64"}, "auc_list": {**meta, "auc": [0.5]}}.get(crafted) or {
            k: v for k, v in meta.items() if k != "model"
        }
        summary.write_text(json.dumps(meta))
    with pytest.raises((DataError, ValueError), match=message) as e:
        deduplicated(imported_runs(tmp_path))
    assert "\n" not in str(e.value)


def test_the_workspace_run_supersedes_an_imported_copy_of_its_configuration(tmp_path):
    from tallrec.report import deduplicated, imported_runs

    _import(tmp_path, "old-exp", ["tallrec_movie_k64_seed0"], [("tallrec", 0, frame(LABELS.astype(float)))])
    mine = Run("tallrec", "movie", frame(noisy(0, 0.3)), "movie", 64, 0, "m")
    kept = deduplicated([mine, *imported_runs(tmp_path)])
    assert kept == [mine]
