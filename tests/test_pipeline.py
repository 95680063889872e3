"""The LLM half through its stage modules on the tiny model: alpaca_tune -> rec_tune -> evaluate ->
summarize, a resume after a real SIGKILL, and AUC by hand."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import astuple
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import sigkill_when_paused

from tallrec import evaluation as E
from tallrec.metrics import auc
from tallrec import paths
from tallrec.io import PREDICTION_COLUMNS
from tallrec.config import Params, with_changes

from test_tuning import one_thread, toy_frame  # noqa: F401 (autouse fixture)


def test_auc_matches_a_hand_computed_value():
    # positives 0.35, 0.8; negatives 0.1, 0.4: of the 4 (pos, neg) pairs 3 are ordered right
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert auc([0, 1, 1], [0.5, 0.5, 0.9]) == pytest.approx(0.75)  # a tie counts one half
    assert np.isnan(auc([1, 1], [0.2, 0.3]))
    assert np.isnan(auc([0, 1], [0.2, float("nan")]))  # a diverged model's scores rank nothing


def test_eval_configs_cover_icl_and_the_grid():
    params = with_changes(
        Params(), {"rec_tune": {"variants": ["tallrec", "at"], "train_domains": ["movie"], "ks": [16], "seeds": [1]}}
    )
    names = [c.name for c in E.eval_configs(params)]
    assert names == ["icl", "tallrec_movie_k16_seed1", "at_movie_k16_seed1"]


def declared_outputs(stage: str, run, model_name: str) -> list[str]:
    """The outs and plots that dvc.yaml declares for one matrix instance of `stage`."""
    import yaml

    spec = yaml.safe_load((Path(__file__).parents[1] / "dvc.yaml").read_text())["stages"][stage]
    item = {"variant": run.variant, "domain": run.train_domain, "k": run.k, "seed": run.seed}
    declared = [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", []) + spec.get("plots", [])]

    def render(text: str) -> str:
        return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), text.replace("${model.name}", model_name))

    return [render(out) for out in declared]


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
        for k in (8, 64):
            shots = paths.shot_path(domain, k, 0)
            shots.parent.mkdir(parents=True, exist_ok=True)
            toy_frame(k, 20 + i, domain).write_parquet(shots)
    alpaca = paths.split_path("alpaca", "train")
    alpaca.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {
            "instruction": ["Say yes.", "Name a colour.", "Add 1 and 2.", "Say no."],
            "input": ["", "", "", "Please."],
            "output": ["Yes.", "Red.", "3", "No."],
        }
    ).write_parquet(alpaca)
    return with_changes(
        Params(),
        {
            "sample": {"ks": [8, 64], "seeds": [0]},
            "baselines": {"models": [], "ks": [8], "seeds": [0]},
            "model": {
                "name": "tiny",
                "source": str(tiny_backbone),
                "dtype": "fp32",
                "device": "cpu",
                "max_length": 256,
                "threads": 1,
            },
            "lora": {"r": 4, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "alpaca_tune": {
                "max_samples": 4,
                "max_epochs": 1,
                "lr": 1e-2,
                "batch_size": 4,
                "micro_batch": 2,
                "seed": 0,
            },
            "rec_tune": {
                "variants": ["tallrec", "at"],
                "train_domains": ["movie", "book"],
                "ks": [8],
                "seeds": [0],
                "lr": 1e-2,
                "batch_size": 4,
                "micro_batch": 4,
                "max_epochs": 2,
                "patience": 1,
                "valid_size": 8,
            },
            "evaluate": {"test_domains": ["movie", "book"], "test_size": None, "batch_size": 4},
        },
    )


def test_pipeline_end_to_end_on_the_tiny_model(tiny_project):
    from tallrec.model import build_base
    from tallrec.stages import alpaca_tune, evaluate, evaluate_icl, rec_tune, references, report, summarize
    from tallrec.config import rec_grid

    params = tiny_project
    build_base("tiny", params.model.source)
    alpaca_tune.main(params)
    assert (paths.MODELS / "alpaca" / "tiny" / "adapter_model.safetensors").exists()
    runs = rec_grid(params.rec_tune)
    assert [r.name for r in runs] == [
        "tallrec_movie_k8_seed0",
        "tallrec_book_k8_seed0",
        "at_movie_k8_seed0",
        "at_book_k8_seed0",
    ]
    for run in runs:
        rec_tune.main(params, *astuple(run))
        out = paths.rec_adapter_dir("tiny", run.name)
        assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
        if run.variant == "tallrec":
            state = json.loads((out / "train_state.json").read_text())
            assert state["done"] and state["runtime"]["threads"] == 1 and state["runtime"]["dtype"] == "fp32"
            assert (paths.LLM_CURVES / run.name / "plots" / "metrics" / "valid" / "auc.tsv").exists()
        else:  # stage 1 alone: the alpaca adapter, bit for bit
            assert (out / "adapter_model.safetensors").read_bytes() == (
                paths.MODELS / "alpaca" / "tiny" / "adapter_model.safetensors"
            ).read_bytes()
    assert not any((paths.SCRATCH / "checkpoints").iterdir()), "a finished run leaves no checkpoint"
    for run in runs:  # DVC fails a stage whose declared outputs are missing (it did for every at instance)
        missing = [out for out in declared_outputs("rec_tune", run, "tiny") if not Path(out).exists()]
        assert not missing, f"rec_tune {run.name} did not write {missing}"

    evaluate_icl.main(params)
    for run in runs:
        evaluate.main(params, *astuple(run))
        assert all(Path(out).exists() for out in declared_outputs("evaluate", run, "tiny"))
    for config in ["icl"] + [r.name for r in runs]:
        summary = json.loads(E.summary_path(config).read_text())
        assert summary["runtime"]["dtype"] == "fp32" and summary["shortened_prompts"] == {"movie": 0, "book": 0}
        for domain in ("movie", "book"):
            pred = pl.read_parquet(E.predictions_path(config, domain))
            assert tuple(pred.columns) == PREDICTION_COLUMNS and pred.height == 12
            assert summary["auc"][domain] == pytest.approx(auc(pred["label"].to_numpy(), pred["score"].to_numpy()))

    summarize.main(params)
    headline = json.loads(paths.LLM_METRICS.read_text())
    assert set(headline) == {"icl", "tallrec", "at"} and set(headline["tallrec"]) == {"movie_auc", "book_auc"}
    per_config = [
        json.loads(E.summary_path(r.name).read_text())["auc"]["movie"] for r in runs if r.variant == "tallrec"
    ]
    assert headline["tallrec"]["movie_auc"] == pytest.approx(np.mean(per_config), abs=1e-6)
    assert json.loads(paths.BASELINE_METRICS.read_text()) == {}

    references.main(params)
    report.main(with_changes(params, {"report": {"bootstrap": 20}}))
    table = (paths.REPORTS / "table3.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| TALLRec |")).split(" | ")
    movie_k8 = json.loads(E.summary_path("tallrec_movie_k8_seed0").read_text())["auc"]["movie"]
    assert row[1].startswith(f"{movie_k8:.3f} (n=1)") and row[2] == "not run"  # K=64 was drawn but not tuned
    assert "| like-share (no parameters) | " in table and "12 / " in table.splitlines()[-1]
    for png in ("figure3.png", "figure4.png"):
        assert (paths.REPORTS / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads((paths.PLOTS / "roc" / "tallrec_movie_k8_seed0_on_movie.json").read_text())[-1] == {
        "fpr": 1.0,
        "tpr": 1.0,
    }


RESUMABLE = {
    "rec_tune": {
        "variants": ["rt"],
        "train_domains": ["movie"],
        "ks": [64],
        "max_epochs": 3,
        "patience": 3,
        "checkpoint_steps": 1,
    }
}


# Loaded by the child through PYTHONPATH: after its Nth checkpoint is complete on disk the child says so in
# a marker file and waits to be killed. The kill point is then the same on any host, however fast (a 10 ms
# poll missed it on a fast one, and could catch a checkpoint mid-swap).
PAUSE_AFTER_CHECKPOINT = """
import os, time
from tallrec import numerics
numerics.pin()  # before torch loads, as the stage itself would
import tallrec.train.loop as loop
_save, _count = loop.save_checkpoint, [0]
def save_checkpoint(folder, model, optimizer, state, epoch_gen_state):
    _save(folder, model, optimizer, state, epoch_gen_state)
    _count[0] += 1
    if _count[0] == int(os.environ["PAUSE_AFTER_CHECKPOINTS"]):
        open(os.environ["PAUSE_MARKER"], "w").write(str(state.global_step))
        time.sleep(600)
loop.save_checkpoint = save_checkpoint
"""


def run_rec_tune(cwd: Path, pause_after: int | None = None, marker: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "TALLREC_PROGRESS": "0"}
    if pause_after is not None:
        hooks = cwd / "hooks"
        hooks.mkdir(exist_ok=True)
        (hooks / "sitecustomize.py").write_text(PAUSE_AFTER_CHECKPOINT)
        env.update(
            PYTHONPATH=os.pathsep.join([str(hooks), *filter(None, [env.get("PYTHONPATH")])]),
            PAUSE_AFTER_CHECKPOINTS=str(pause_after),
            PAUSE_MARKER=str(marker),
        )
    return subprocess.Popen(
        [sys.executable, "-m", "tallrec.stages.rec_tune", "rt", "movie", "64", "0"],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_sigkilled_rec_tune_resumes_to_the_same_adapter(tiny_project, tmp_path):
    """A real SIGKILL in the middle of training (not a cooperative stop); the rerun resumes from the
    scratch checkpoint and ends with the adapter an uninterrupted run makes, bit for bit (1 thread)."""
    import yaml

    from tallrec.config import as_dict
    from tallrec.model import build_base

    params = with_changes(tiny_project, RESUMABLE)
    build_base("tiny", params.model.source)
    project = Path.cwd()
    (project / "params.yaml").write_text(yaml.safe_dump(as_dict(params), sort_keys=False))
    adapter = paths.rec_adapter_dir("tiny", "rt_movie_k64_seed0") / "adapter_model.safetensors"
    whole = run_rec_tune(project)
    assert whole.wait(timeout=600) == 0, whole.stderr.read()
    reference, reference_state = adapter.read_bytes(), (adapter.parent / "train_state.json").read_bytes()
    curves = paths.LLM_CURVES / "rt_movie_k64_seed0"
    reference_curves = {p.relative_to(curves): p.read_bytes() for p in curves.rglob("*") if p.is_file()}
    assert len(reference_curves) >= 3
    adapter.parent.rename(tmp_path / "reference")

    marker = tmp_path / "paused"
    child = run_rec_tune(project, pause_after=20, marker=marker)
    sigkill_when_paused(child, marker)
    killed_at = json.loads(next((paths.SCRATCH / "checkpoints").glob("[!.]*/train_state.json")).read_text())
    assert killed_at["global_step"] == int(marker.read_text()) == 20 and not adapter.exists()
    shutil.rmtree(project / "hooks")
    # the killed run never touched the finished curves: they still belong with the last finished adapter
    assert {p.relative_to(curves): p.read_bytes() for p in curves.rglob("*") if p.is_file()} == reference_curves

    resumed = run_rec_tune(project)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    assert adapter.read_bytes() == reference
    # the whole output folder hashes alike (DVC re-runs nothing downstream); the resume point is in the run log
    assert (adapter.parent / "train_state.json").read_bytes() == reference_state
    assert {p.relative_to(curves): p.read_bytes() for p in curves.rglob("*") if p.is_file()} == reference_curves
    assert json.loads(paths.run_log_path("train/rt_movie_k64_seed0").read_text())["resumed_at"] == [
        killed_at["global_step"]
    ]
    assert list((paths.SCRATCH / "checkpoints").iterdir()) == []


@pytest.mark.parametrize(
    "stage, args, problem",
    [
        ("rec_tune", ["../evil", "movie", "64", "0"], "variant '../evil' is not one of tallrec, rt, at"),
        ("rec_tune", ["tallrec", "../../tmp", "64", "0"], "train domain '../../tmp' is not one of movie, book, both"),
        ("evaluate", ["tallrec", "movie", "-64", "0"], "K must be >= 1, not -64"),
        ("evaluate", ["tallrec", "movie", "64", "-1"], "seed must be >= 0, not -1"),
    ],
)
def test_a_stage_module_checks_its_arguments_as_the_cli_does(tmp_path, stage, args, problem):
    """`python -m tallrec.stages.rec_tune ../evil movie 64 0` trained and wrote outside models/rec/."""
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[1] / "params.yaml").read_text())
    done = subprocess.run(
        [sys.executable, "-m", f"tallrec.stages.{stage}", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1 and len(lines) == 1 and problem in lines[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]
