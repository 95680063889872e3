"""Training mechanics on the tiny in-process LLaMA: labels, loss, learning, resume, adapter round trip."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import sigkill_when_paused
import torch

from tallrec.config import LoraParams, ModelParams, Params, RecRun, RecTuneParams, rec_grid
from tallrec.model import add_lora, load_adapter, load_base
from tallrec.prompts import alpaca_prompt, answer_token_ids
from tallrec.scoring import score_prompts as engine_scores
from tallrec.train import loop
from tallrec.train.batches import IGNORE, collate, encode, encode_all
from tallrec.train.loop import TrainConfig, TrainHooks, loss_of, train


@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model gains nothing from threads, and on a busy 2-core machine two threads wait on
    each other at every op (measured: 43 s instead of 1.5 s for one toy run)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


INSTRUCTION = (
    "Given the user's preference and unpreference, identify whether the user will like the target movie "
    'by answering "Yes." or "No.".'
)
FP32 = ModelParams(dtype="fp32", device="cpu")


def tcfg(**changes) -> TrainConfig:
    """The rec_tune defaults as the loop sees them, with some fields changed."""
    return replace(TrainConfig.of(Params().rec_tune, max_length=512, seed=0), **changes)


def rec_prompts(df: pl.DataFrame) -> list[str]:
    return [alpaca_prompt(i, x) for i, x in zip(df["instruction"], df["input"])]


def score_prompts(model, tok, prompts, progress=False):
    return engine_scores(model, tok, prompts, batch_size=8, progress=progress)


def toy_frame(n: int, seed: int, domain: str = "movie") -> pl.DataFrame:
    """A signal a tiny model can learn: the target is "Alpha ..." when liked, "Beta ..." when not."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation([1, 0] * (n // 2))
    fill = ["Gamma", "Delta", "Epsilon"]
    # the signal word fills the history too: a random 2-layer model attends almost uniformly, so
    # one word among ~200 tokens would be too faint to learn in a few steps
    inputs = [
        f'User Preference: {", ".join([("Alpha" if y else "Beta")] * 8)}\nUser Unpreference: "Heat (1995)"\n'
        f"Whether the user will like the target {domain} {fill[i % 3]} {'Alpha' if y else 'Beta'}?"
        for i, y in enumerate(labels)
    ]
    return pl.DataFrame(
        {
            "domain": [domain] * n,
            "user": [str(i % 7) for i in range(n)],
            "target_item_id": [str(i) for i in range(n)],
            "label": pl.Series(labels, dtype=pl.Int8),
            "instruction": [INSTRUCTION] * n,
            "input": inputs,
            "output": ["Yes." if y else "No." for y in labels],
            "history_item_ids": [[str((i + j) % 5) for j in range(3)] for i in range(n)],  # for the references
            "history_labels": [[int(y), 1, 0] for y in labels],
        }
    )


def test_encode_masks_the_prompt_and_answer_starts_with_the_scored_token(tiny_backbone):
    _, tok = load_base(tiny_backbone, FP32)
    prompt = alpaca_prompt(INSTRUCTION, "Alpha?")
    cfg = tcfg(max_length=512)
    ids, labels = encode(tok, prompt, "Yes.", cfg)
    n_prompt = len(tok(prompt)["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt] == ids[n_prompt] == answer_token_ids(tok, "Yes.", "No.")[0]
    assert ids[-1] == tok.eos_token_id
    ids2, labels2 = encode(tok, prompt, "Yes.", tcfg(train_on_inputs=True))
    assert ids2 == ids and labels2 == ids
    assert encode(tok, prompt, "Yes.", tcfg(max_length=n_prompt)) is None  # no answer left


def test_loss_matches_full_logits_loss(tiny_backbone):
    model, tok = load_base(tiny_backbone, FP32)
    df = toy_frame(4, 0)
    ex = encode_all(tok, rec_prompts(df), df["output"].to_list(), tcfg())
    x, y, mask = collate(ex, tok.pad_token_id)
    total, n = loss_of(model, x, y, mask, "cpu")
    # reference: every row alone, all logits, HF's own shifted loss
    ref_sum = 0.0
    for ids, labels in ex:
        out = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]))
        k = sum(t != IGNORE for t in labels[1:])
        ref_sum += out.loss.item() * k
    assert n == sum(sum(t != IGNORE for t in lab[1:]) for _, lab in ex)
    assert total.item() == pytest.approx(ref_sum, rel=1e-4)


def _toy_run(
    tiny_backbone, tmp_path, epochs=2, stop=None, out_name="run", lr=1e-2, alpha=16, stop_step=None, fingerprint="toy"
):
    torch.manual_seed(0)
    model, tok = load_base(tiny_backbone, FP32)
    model = add_lora(model, LoraParams(r=8, alpha=alpha, dropout=0.05))
    train_df, valid_df = toy_frame(24, 1), toy_frame(16, 2)
    cfg = tcfg(
        lr=lr,
        batch_size=8,
        micro_batch=4,
        max_epochs=epochs,
        patience=10,
        seed=0,
        checkpoint_steps=1 if stop_step else 0,
    )
    ex = encode_all(tok, rec_prompts(train_df), train_df["output"].to_list(), cfg)
    valid = (rec_prompts(valid_df), valid_df["label"].to_list())
    state = train(
        model,
        tok,
        ex,
        cfg,
        tmp_path / out_name,
        fingerprint=fingerprint,
        checkpoint=tmp_path / f"{out_name}.ckpt",
        valid=valid,
        hooks=TrainHooks(stop_after_epochs=stop, stop_after_steps=stop_step),
    )
    return model, tok, state, valid


def test_training_on_a_toy_signal_raises_valid_auc_and_resume_matches(tiny_backbone, tmp_path):
    from sklearn.metrics import roc_auc_score

    base, tok = load_base(tiny_backbone, FP32)
    valid_df = toy_frame(16, 2)
    before = roc_auc_score(valid_df["label"].to_list(), score_prompts(base, tok, rec_prompts(valid_df), progress=False))

    _, _, full, _ = _toy_run(tiny_backbone, tmp_path, out_name="full")
    assert full.done and full.best_auc >= 0.9 and full.best_auc > before + 0.3
    assert len(full.history) == 2 and all("valid_auc" in h for h in full.history)
    out = tmp_path / "full"
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert json.loads((out / "train_state.json").read_text())["best_auc"] == full.best_auc

    # interrupted after one epoch, then started again: same history and weights as uninterrupted
    _, _, part, _ = _toy_run(tiny_backbone, tmp_path, stop=1, out_name="resumed")
    assert not part.done and part.epoch == 1
    _, _, resumed, _ = _toy_run(tiny_backbone, tmp_path, out_name="resumed")
    assert resumed.done and resumed.history == full.history
    from safetensors.torch import load_file

    # interrupted in the middle of the second epoch (3 steps an epoch, checkpoints after every step)
    _, _, part, _ = _toy_run(tiny_backbone, tmp_path, stop_step=4, out_name="mid")
    assert not part.done and (part.epoch, part.step_in_epoch) == (1, 1)
    _, _, mid, _ = _toy_run(tiny_backbone, tmp_path, stop_step=None, out_name="mid")
    assert mid.done and [h["valid_auc"] for h in mid.history] == [h["valid_auc"] for h in full.history]
    np.testing.assert_allclose([h["loss"] for h in mid.history], [h["loss"] for h in full.history], rtol=1e-6)
    for run in ("resumed", "mid"):
        a, b = load_file(out / "adapter_model.safetensors"), load_file(tmp_path / run / "adapter_model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert not (tmp_path / f"{run}.ckpt").exists(), "a finished run removes its checkpoint"


def test_adapter_round_trips_with_identical_scores(tiny_backbone, tmp_path):
    model, tok, state, valid = _toy_run(tiny_backbone, tmp_path, epochs=1)
    # after 1 epoch the best adapter is the trained model itself
    p_trained = score_prompts(model, tok, valid[0], progress=False)
    base, tok2 = load_base(tiny_backbone, FP32)
    reloaded = load_adapter(base, tmp_path / "run")
    p_reloaded = score_prompts(reloaded, tok2, valid[0], progress=False)
    np.testing.assert_allclose(p_reloaded, p_trained, atol=1e-6)
    merged = reloaded.merge_and_unload()
    np.testing.assert_allclose(score_prompts(merged, tok2, valid[0], progress=False), p_trained, atol=1e-4)


def test_rec_grid_names_carry_every_coordinate():
    section = RecTuneParams(variants=("rt",), train_domains=("movie", "both"), ks=(16, 64), seeds=(3,))
    names = [r.name for r in rec_grid(section)]
    assert names == ["rt_movie_k16_seed3", "rt_movie_k64_seed3", "rt_both_k16_seed3", "rt_both_k64_seed3"]
    assert [r.name for r in rec_grid(RecTuneParams(variants=("at", "tallrec")))] == [
        "at_movie_k64_seed0",
        "tallrec_movie_k64_seed0",
    ]
    assert RecRun("tallrec", "book", 64, 0).name == "tallrec_book_k64_seed0"


def test_a_non_finite_step_is_skipped_not_applied(tiny_backbone, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss_of = loop.loss_of

    def nan_once(*args, **kwargs):  # the first micro-batch's loss (and so its gradient) is NaN
        loss, n = real_loss_of(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 1 else loss), n

    monkeypatch.setattr(loop, "loss_of", nan_once)
    model, _, state, _ = _toy_run(tiny_backbone, tmp_path, epochs=1)
    assert state.skipped_steps == 1 and state.global_step == 3
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(torch.isfinite(p).all() for p in lora)
    assert state.best_auc is not None and np.isfinite(state.best_auc)


def test_tsv_curves_write_what_dvclive_writes_and_append_on_resume(tmp_path):
    from tallrec.train.curves import TsvCurves

    live = TsvCurves(tmp_path / "run")
    for loss, auc in [(0.5, 0.6), (0.25, 0.7)]:
        live.log_metric("train/loss", loss)
        live.log_metric("valid/auc", auc)
        live.next_step()
    live.end()
    again = TsvCurves(tmp_path / "run")
    again.step = 2  # what `train` sets on a resume: the epochs already done
    again.log_metric("train/loss", 0.125)
    again.next_step()
    # dvclive's own files for the same calls (a real Live, resumed the way TrimmingLive resumes it)
    from dvclive import Live

    from tallrec.train.curves import TrimmingLive

    real = TrimmingLive(
        Live(str(tmp_path / "dvclive"), report=None, save_dvc_exp=False, dvcyaml=None), tmp_path / "dvclive"
    )
    for loss, auc in [(0.5, 0.6), (0.25, 0.7)]:
        real.log_metric("train/loss", loss)
        real.log_metric("valid/auc", auc)
        real.next_step()
    real.end()
    resumed = TrimmingLive(
        Live(str(tmp_path / "dvclive"), resume=True, report=None, save_dvc_exp=False, dvcyaml=None),
        tmp_path / "dvclive",
    )
    resumed.step = 2
    resumed.log_metric("train/loss", 0.125)
    resumed.next_step()
    resumed.end()
    ours, theirs = tmp_path / "run" / "plots" / "metrics", tmp_path / "dvclive" / "plots" / "metrics"
    for name in ("train/loss.tsv", "valid/auc.tsv"):
        assert (ours / name).read_text() == (theirs / name).read_text(), name
    assert (ours / "train" / "loss.tsv").read_text().splitlines()[-1] == "2\t0.125"


def test_a_step_does_not_depend_on_how_the_batch_is_cut(tiny_backbone, tmp_path):
    """The batch is sorted by length and cut into micro-batches; the step's update must be the same
    for any micro-batch size (the gradient is one sum over the batch's answer tokens)."""
    df = toy_frame(8, 3)
    df = df.with_columns(
        input=pl.Series(
            [x.replace("User Preference:", "User Preference:" + " Gamma," * i) for i, x in enumerate(df["input"])]
        )
    )  # 8 different lengths
    weights = {}
    for micro in (1, 2, 8):
        torch.manual_seed(0)
        model, tok = load_base(tiny_backbone, FP32)
        model = add_lora(model, LoraParams(r=8, alpha=16, dropout=0.0))  # no dropout draws to differ
        cfg = tcfg(lr=1e-2, batch_size=8, micro_batch=micro, max_epochs=1, seed=0, patience=None)
        ex = encode_all(tok, rec_prompts(df), df["output"].to_list(), cfg)
        assert len({len(ids) for ids, _ in ex}) > 1  # rows of different lengths, so padding is exercised
        train(
            model,
            tok,
            ex,
            cfg,
            tmp_path / f"micro{micro}",
            fingerprint=str(micro),
            checkpoint=tmp_path / f"ckpt{micro}",
        )
        weights[micro] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for micro in (2, 8):
        for name, w in weights[1].items():
            torch.testing.assert_close(weights[micro][name], w, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ defects found by review (issue 11)


class _Payload:
    """Pickles into a call that leaves a marker file: what a crafted checkpoint could run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_a_pickled_checkpoint_is_refused_and_never_run(tiny_backbone, tmp_path):
    from tallrec.io import DataError

    ckpt = tmp_path / "run.ckpt"
    ckpt.mkdir()
    (ckpt / "train_state.json").write_text(json.dumps({"fingerprint": "toy", "epoch": 1}))
    marker = tmp_path / "payload-ran"
    torch.save({"optimizer": _Payload(marker)}, ckpt / "trainer.pt")
    with pytest.raises(DataError, match=r"trainer\.pt: pickled checkpoint refused") as e:
        _toy_run(tiny_backbone, tmp_path)
    assert "\n" not in str(e.value) and not marker.exists()


def test_no_pickle_load_anywhere_in_the_package():
    import re

    from tallrec import paths as _paths  # noqa: F401

    src = Path(__file__).resolve().parents[1] / "src" / "tallrec"
    for file in src.rglob("*.py"):
        text = file.read_text()
        assert not re.search(r"^\s*(import pickle|from pickle )", text, re.M), file
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{file}: {call}"


# The child of the SIGKILL tests: a 2-epoch toy run (a checkpoint after each epoch) that, when asked,
# stops at a deterministic point and waits to be killed: after its first checkpoint is whole on disk, or
# inside `finish`, with the new output folder written under its temporary name but not yet renamed.
KILLABLE = """
import os, sys, time
from pathlib import Path
from tallrec import numerics
numerics.pin()
import torch
torch.set_num_threads(1)
from tallrec.train import loop
import test_tuning

where, marker = os.environ.get("PAUSE_AT"), os.environ.get("PAUSE_MARKER")

def pause():
    Path(marker).write_text("paused")
    time.sleep(600)

save, write_json = loop.save_checkpoint, loop.write_json

def save_checkpoint(folder, *args):
    save(folder, *args)
    if where == "checkpoint":
        pause()

def finishing(obj, path):
    write_json(obj, path)
    if where == "finish" and Path(path).name == "train_state.json" and Path(path).parent.name.startswith(".run."):
        pause()

loop.save_checkpoint, loop.write_json = save_checkpoint, finishing
test_tuning._toy_run(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def _run_killable(backbone: Path, folder: Path, pause_at: str | None = None):
    import os
    import subprocess
    import sys

    script = folder.parent / f"{folder.name}.py"
    script.write_text(KILLABLE)
    marker = folder.parent / f"{folder.name}.paused"
    env = {**os.environ, "TALLREC_PROGRESS": "0", "PAUSE_MARKER": str(marker)}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), *filter(None, [env.get("PYTHONPATH")])])
    if pause_at:
        env["PAUSE_AT"] = pause_at
    folder.mkdir(exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, str(script), str(backbone), str(folder)],
        cwd=folder,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    if pause_at is None:
        assert child.wait(timeout=300) == 0, child.stderr.read()
        return
    sigkill_when_paused(child, marker)
    marker.unlink()


@pytest.mark.parametrize("pause_at", ["checkpoint", "finish"])
def test_a_sigkilled_run_leaves_no_mixed_output_and_the_next_run_ends_as_an_uninterrupted_one(
    tiny_backbone, tmp_path, pause_at
):
    """A real SIGKILL (no `finally` runs, so atomic_dir's temporaries stay): after the first epoch's
    checkpoint, or in `finish` between writing the new output folder and renaming it into place. The
    output is absent (never half there), the checkpoint is whole, and a rerun resumes to the same bytes."""
    reference = tmp_path / "reference"
    _run_killable(tiny_backbone, reference)
    want = {p.name: p.read_bytes() for p in (reference / "run").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "train_state.json"} <= set(want)

    killed = tmp_path / "killed"
    _run_killable(tiny_backbone, killed, pause_at)
    out, ckpt = killed / "run", killed / "run.ckpt"
    assert not out.exists()
    state = json.loads((ckpt / "train_state.json").read_text())
    assert (state["epoch"], state["done"]) == ((1, False) if pause_at == "checkpoint" else (2, False))
    leftovers = sorted(p.name for p in killed.glob(".run.*.tmp"))
    assert bool(leftovers) == (pause_at == "finish"), leftovers  # the unrenamed output folder

    _run_killable(tiny_backbone, killed)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == want
    assert not ckpt.exists() and not list(killed.glob(".run*.tmp")) and not list(killed.glob(".run.ckpt*"))
    log = json.loads((killed / "logs" / "train" / "train.json").read_text())
    assert log["resumed_at"] == [3 if pause_at == "checkpoint" else 6]


def test_the_published_train_state_does_not_follow_the_code(tiny_backbone, tmp_path, monkeypatch):
    """The fingerprint hashes the training code's files: in train_state.json any refactor changed the
    adapter folder's DVC hash, weights unchanged. It belongs to the checkpoint and the run log only."""
    monkeypatch.chdir(tmp_path)
    published = {}
    for code in ("code-a", "code-b"):  # what two versions of the code give as fingerprints
        _toy_run(tiny_backbone, tmp_path, epochs=1, out_name=code, fingerprint=code)
        published[code] = (tmp_path / code / "train_state.json").read_bytes()
        assert json.loads(Path("logs/train/train.json").read_text())["fingerprint"] == code
    assert published["code-a"] == published["code-b"]


def test_train_on_inputs_trains_and_its_loss_matches_the_full_loss(tiny_backbone, tmp_path):
    model, tok = load_base(tiny_backbone, FP32)
    df = toy_frame(4, 0)
    ex = encode_all(tok, rec_prompts(df), df["output"].to_list(), tcfg(train_on_inputs=True))
    x, y, mask = collate(ex, tok.pad_token_id)
    total, n = loss_of(model, x, y, mask, "cpu")
    ref = sum(
        model(input_ids=torch.tensor([ids]), labels=torch.tensor([lab])).loss.item() * (len(lab) - 1) for ids, lab in ex
    )
    assert n == sum(len(lab) - 1 for _, lab in ex) and total.item() == pytest.approx(ref, rel=1e-4)
    model = add_lora(model, LoraParams(r=4, alpha=8, dropout=0.0))
    state = train(
        model,
        tok,
        ex,
        tcfg(train_on_inputs=True, batch_size=4, micro_batch=2, max_epochs=1),
        tmp_path / "out",
        fingerprint="inputs",
        checkpoint=tmp_path / "ckpt",
    )
    assert state.done and np.isfinite(state.history[0]["loss"])


def test_a_nan_validation_auc_is_never_the_best(tiny_backbone, tmp_path, monkeypatch):
    real, calls = loop.auc_of, {"n": 0}

    def nan_first(labels, scores):
        calls["n"] += 1
        return float("nan") if calls["n"] == 1 else real(labels, scores)

    monkeypatch.setattr(loop, "auc_of", nan_first)
    _, _, state, _ = _toy_run(tiny_backbone, tmp_path, epochs=2)
    assert np.isnan(state.history[0]["valid_auc"]) and state.best_epoch == 2
    assert state.best_auc == state.history[1]["valid_auc"]


def test_resumed_curves_continue_the_step_count(tiny_backbone, tmp_path, monkeypatch):
    """Real dvclive, killed (simulated) after epoch 1 and resumed: one row per epoch, steps 0, 1, 2."""
    from tallrec.train.curves import curves

    monkeypatch.chdir(tmp_path)

    def run(stop):
        torch.manual_seed(0)
        model, tok = load_base(tiny_backbone, FP32)
        model = add_lora(model, LoraParams(r=4, alpha=8, dropout=0.0))
        train_df, valid_df = toy_frame(8, 1), toy_frame(8, 2)
        cfg = tcfg(batch_size=8, micro_batch=4, max_epochs=3, patience=10)
        live = curves(tmp_path / "ckpt.curves", resume=(tmp_path / "ckpt" / "train_state.json").exists())
        try:
            return train(
                model,
                tok,
                encode_all(tok, rec_prompts(train_df), train_df["output"].to_list(), cfg),
                cfg,
                tmp_path / "out",
                fingerprint="curves",
                checkpoint=tmp_path / "ckpt",
                valid=(rec_prompts(valid_df), valid_df["label"].to_list()),
                live=live,
                publish=[(tmp_path / "ckpt.curves", Path("metrics/curves/llm/toy"))],
                hooks=TrainHooks(stop_after_epochs=stop),
            )
        finally:
            live.end()

    assert not run(stop=1).done
    assert not Path("metrics/curves/llm/toy").exists()  # published with the adapter, not before
    assert run(stop=None).done and not (tmp_path / "ckpt.curves").exists()
    metrics = Path("metrics/curves/llm/toy/plots/metrics")
    for tsv in (metrics / "train" / "loss.tsv", metrics / "valid" / "auc.tsv"):
        steps = [line.split("\t")[0] for line in tsv.read_text().splitlines()[1:]]
        assert steps == ["0", "1", "2"], tsv


def test_split_rows_too_long_for_the_model_are_shortened_by_the_same_rule(tiny_backbone):
    from tallrec.config import PromptParams
    from tallrec.io import DataError
    from tallrec.prompts import RecTemplate, prompt_budget, rec_prompts as split_prompts

    _, tok = load_base(tiny_backbone, FP32)
    t = RecTemplate.from_params("movie")
    huge = '"' + "Alpha " * 3000 + '(1995)"'
    rows = [
        (['"Heat (1995)"', huge, '"Gamma (1999)"'], [1, 1, 0], '"Heat (1995)"'),
        (['"Heat (1995)"'], [0], '"Delta (1999)"'),
    ]
    df = pl.DataFrame(
        {
            "domain": ["movie"] * 2,
            "user": ["1", "2"],
            "target_item_id": ["5", "6"],
            "history_texts": [r[0] for r in rows],
            "history_labels": [r[1] for r in rows],
            "target_text": [r[2] for r in rows],
            "instruction": [t.instruction] * 2,
            "input": [
                t.input([x for x, y in zip(h, lab) if y], [x for x, y in zip(h, lab) if not y], target)
                for h, lab, target in rows
            ],
        }
    )
    budget = prompt_budget(tok, PromptParams(), 1024, 8192)
    prompts, shortened = split_prompts(df, PromptParams(), tok, budget)
    assert shortened == 1 and len(tok(prompts[0])["input_ids"]) <= budget
    assert prompts[0] == t.full_prompt([], ['"Gamma (1999)"'], '"Heat (1995)"')  # the two oldest went
    assert prompts[1] == alpaca_prompt(df["instruction"][1], df["input"][1])  # a row that fits is as released
    too_long = df.with_columns(target_text=pl.Series([huge, "x"]))
    too_long = too_long.with_columns(input=pl.Series([t.input([], [], huge), "x"]))
    with pytest.raises(DataError, match="movie user 1 target 5: the target alone makes a prompt"):
        split_prompts(too_long, PromptParams(), tok, budget)


def test_the_accumulated_gradient_is_the_token_mean_whatever_the_cut(tiny_backbone):
    """The gradient itself, not one Adam step (which moves a fresh LoRA B by about lr * sign(g), so a
    wrong scale passed): rows with answers of different token lengths, cut into micro-batches of 1, 3
    and 8, give the gradient of the mean cross-entropy over all the batch's answer tokens, computed
    here row by row without padding."""
    import torch.nn.functional as F

    from tallrec.train.checkpoint import TrainState
    from tallrec.train.loop import train_step

    df = toy_frame(8, 5)
    answers = ["Yes.", "No.", "Yes. Alpha Beta.", "No. Gamma.", "Yes.", "No. Delta Epsilon Alpha.", "Yes. Beta.", "No."]
    torch.manual_seed(0)
    model, tok = load_base(tiny_backbone, FP32)
    model = add_lora(model, LoraParams(r=4, alpha=8, dropout=0.0), seed=1)
    for name, p in model.named_parameters():  # LoRA B starts at 0: give it values so A gets a gradient too
        if p.requires_grad and "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    params = [p for p in model.parameters() if p.requires_grad]
    cfg = tcfg(batch_size=8, max_grad_norm=None, lr=0.0)  # train_step sets the optimizer's lr from cfg
    batch = [encode(tok, prompt, answer, cfg) for prompt, answer in zip(rec_prompts(df), answers)]
    assert len({sum(t != IGNORE for t in labels) for _, labels in batch}) >= 3  # different answer lengths

    total, n_tokens = 0.0, 0
    for ids, labels in batch:  # the reference: each row alone, no padding, one mean over every token
        logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
        target = torch.tensor(labels[1:])
        total = total + F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
        n_tokens += int((target != IGNORE).sum())
    reference = torch.autograd.grad(total / n_tokens, params)

    for micro in (1, 3, 8):
        optimizer = torch.optim.SGD(params, lr=0.0)  # lr 0: the step changes nothing, the gradient is read after it
        train_step(model, optimizer, batch, replace(cfg, micro_batch=micro), TrainState("g"), tok.pad_token_id, "cpu")
        for got, want in zip((p.grad for p in params), reference):
            assert want.norm() > 0 and float((got - want).norm() / want.norm()) < 1e-5, micro
