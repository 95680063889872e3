"""evaluate: AUC by hand, and the whole LLM half (alpaca_tune -> rec_tune -> evaluate) on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tallrec import evaluation as E
from tallrec.metrics import auc
from tallrec import paths
from tallrec.config import Params, with_changes

from test_tuning import one_thread, toy_frame  # noqa: F401 (autouse fixture)


def test_auc_matches_a_hand_computed_value():
    # positives 0.35, 0.8; negatives 0.1, 0.4: of the 4 (pos, neg) pairs 3 are ordered right
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([0, 1, 1], [0.5, 0.5, 0.9]) == pytest.approx(0.75)  # a tie counts one half
    assert np.isnan(auc([1, 1], [0.2, 0.3]))
    assert np.isnan(auc([0, 1], [0.2, float("nan")]))  # a diverged model's scores rank nothing


def test_eval_configs_cover_icl_at_and_the_grid():
    params = with_changes(Params(), {"rec_tune": {"variant": "tallrec", "train_domains": ["movie"], "ks": [16], "seeds": [1]}})
    names = [c.name for c in E.eval_configs(params)]
    assert names == ["icl", "tallrec_movie_k16_seed1"]
    params = with_changes(params, {"rec_tune": {"variant": "at"}})
    assert [c.name for c in E.eval_configs(params)] == ["icl", "at"]


@pytest.fixture
def tiny_project(tiny_backbone, tmp_path, monkeypatch):
    """A project folder with toy data in the real layout, the tiny model as a local backbone."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TALLREC_PROGRESS", "0")
    for i, domain in enumerate(["movie", "book"]):
        for split, n in [("valid", 8), ("test", 12)]:
            path = paths.split_path(domain, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            toy_frame(n, 10 * i + len(split), domain).write_parquet(path)
        shots = paths.shot_path(domain, 8, 0)
        shots.parent.mkdir(parents=True, exist_ok=True)
        toy_frame(8, 20 + i, domain).write_parquet(shots)
    alpaca = paths.split_path("alpaca", "train")
    alpaca.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"instruction": ["Say yes.", "Name a colour.", "Add 1 and 2.", "Say no."],
                  "input": ["", "", "", "Please."], "output": ["Yes.", "Red.", "3", "No."]}).write_parquet(alpaca)
    return with_changes(Params(), {
        "sample": {"ks": [8], "seeds": [0]},
        "baselines": {"ks": [8], "seeds": [0]},
        "model": {"name": "tiny", "source": str(tiny_backbone), "dtype": "fp32", "device": "cpu", "max_length": 256},
        "lora": {"r": 4, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "alpaca_tune": {"max_samples": 4, "epochs": 1, "lr": 1e-2, "batch_size": 4, "micro_batch": 2, "seed": 0},
        "rec_tune": {"variant": "tallrec", "train_domains": ["movie", "book"], "ks": [8], "seeds": [0], "lr": 1e-2,
                     "batch_size": 4, "micro_batch": 4, "max_epochs": 2, "patience": 1, "valid_size": 8},
        "evaluate": {"test_domains": ["movie", "book"], "test_size": None, "batch_size": 4},
    })


def test_pipeline_end_to_end_on_the_tiny_model(tiny_project, monkeypatch):
    from tallrec.model import build_base
    from tallrec.tuning import alpaca_tune, rec_tune

    params = tiny_project
    build_base("tiny", params.model.source)
    state = alpaca_tune(params)
    assert state.done and (paths.MODELS / "alpaca" / "tiny" / "adapter_model.safetensors").exists()
    results = rec_tune(params)
    assert [r.name for r, _ in results] == ["tallrec_movie_k8_seed0", "tallrec_book_k8_seed0"]
    for run, st in results:
        out = paths.MODELS / "rec" / "tiny" / run.name
        assert st.done and (out / "adapter_config.json").exists() and (out / "train_state.json").exists()
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
        curve = paths.LLM_CURVES / run.name / "plots" / "metrics" / "valid" / "auc.tsv"
        assert curve.exists(), "dvclive wrote the validation curve"

    assert not any((paths.SCRATCH / "checkpoints").iterdir()), "a finished run leaves no checkpoint"
    combined = E.evaluate(params)
    assert set(combined) == {"icl", "tallrec_movie_k8_seed0", "tallrec_book_k8_seed0"}
    assert json.loads(paths.LLM_METRICS.read_text()) == combined
    for config in combined:
        summary = json.loads(E.summary_path(config).read_text())
        for domain in ("movie", "book"):
            pred = pl.read_parquet(E.predictions_path(config, domain))
            assert tuple(pred.columns) == E.PREDICTION_COLUMNS and pred.height == 12
            assert summary["auc"][domain] == pytest.approx(auc(pred["label"].to_numpy(), pred["score"].to_numpy()))
            assert combined[config][f"{domain}_auc"] == pytest.approx(summary["auc"][domain], abs=1e-6)

    # everything is finished: a second run trains and scores nothing
    import tallrec.scoring

    def boom(*a, **k):
        raise AssertionError("scored again")

    monkeypatch.setattr(tallrec.scoring, "score_prompts", boom)
    assert rec_tune(params)[0][1].done
    assert E.evaluate(params) == combined
