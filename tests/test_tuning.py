"""Training mechanics on the tiny in-process LLaMA: labels, loss, learning, resume, adapter round trip."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from tallrec.model import LoraParams, ModelConfig, add_lora, load_adapter, load_base
from tallrec.prompts import alpaca_prompt
from tallrec.scoring import answer_token_ids, score_prompts
from tallrec.tuning import (IGNORE, RecRun, TrainConfig, collate, encode, encode_all, loss_of, rec_grid,
                            rec_prompts, train)

@pytest.fixture(autouse=True)
def one_thread():
    """The tiny model gains nothing from threads, and on a busy 2-core machine two threads wait on
    each other at every op (measured: 43 s instead of 1.5 s for one toy run)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


INSTRUCTION = 'Given the user\'s preference and unpreference, identify whether the user will like the target movie by answering "Yes." or "No.".'
FP32 = ModelConfig(dtype="fp32", device="cpu")


def toy_frame(n: int, seed: int, domain: str = "movie") -> pl.DataFrame:
    """A signal a tiny model can learn: the target is "Alpha ..." when liked, "Beta ..." when not."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation([1, 0] * (n // 2))
    fill = ["Gamma", "Delta", "Epsilon"]
    # the signal word fills the history too: a random 2-layer model attends almost uniformly, so
    # one word among ~200 tokens would be too faint to learn in a few steps
    inputs = [
        f"User Preference: {', '.join([('Alpha' if y else 'Beta')] * 8)}\nUser Unpreference: \"Heat (1995)\"\n"
        f"Whether the user will like the target {domain} {fill[i % 3]} {'Alpha' if y else 'Beta'}?"
        for i, y in enumerate(labels)
    ]
    return pl.DataFrame({
        "domain": [domain] * n, "user": [str(i % 7) for i in range(n)], "target_item_id": [str(i) for i in range(n)],
        "label": pl.Series(labels, dtype=pl.Int8), "instruction": [INSTRUCTION] * n, "input": inputs,
        "output": ["Yes." if y else "No." for y in labels],
    })


def test_encode_masks_the_prompt_and_answer_starts_with_the_scored_token(tiny_backbone):
    _, tok = load_base(tiny_backbone, FP32)
    prompt = alpaca_prompt(INSTRUCTION, "Alpha?")
    cfg = TrainConfig(max_length=512)
    ids, labels = encode(tok, prompt, "Yes.", cfg)
    n_prompt = len(tok(prompt)["input_ids"])
    assert labels[:n_prompt] == [IGNORE] * n_prompt
    assert labels[n_prompt] == ids[n_prompt] == answer_token_ids(tok)[0]
    assert ids[-1] == tok.eos_token_id
    ids2, labels2 = encode(tok, prompt, "Yes.", TrainConfig(train_on_inputs=True))
    assert ids2 == ids and labels2 == ids
    assert encode(tok, prompt, "Yes.", TrainConfig(max_length=n_prompt)) is None  # no answer left


def test_loss_matches_full_logits_loss(tiny_backbone):
    model, tok = load_base(tiny_backbone, FP32)
    df = toy_frame(4, 0)
    ex = encode_all(tok, rec_prompts(df), df["output"].to_list(), TrainConfig())
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


def _toy_run(tiny_backbone, tmp_path, epochs=2, stop=None, out_name="run", lr=1e-2, alpha=16, stop_step=None):
    torch.manual_seed(0)
    model, tok = load_base(tiny_backbone, FP32)
    model = add_lora(model, LoraParams(r=8, alpha=alpha, dropout=0.05))
    train_df, valid_df = toy_frame(24, 1), toy_frame(16, 2)
    cfg = TrainConfig(lr=lr, batch_size=8, micro_batch=4, epochs=epochs, patience=10, seed=0,
                      checkpoint_steps=1 if stop_step else 0)
    ex = encode_all(tok, rec_prompts(train_df), train_df["output"].to_list(), cfg)
    valid = (rec_prompts(valid_df), valid_df["label"].to_list())
    state = train(model, tok, ex, cfg, tmp_path / out_name, fingerprint="toy", valid=valid, stop_after_epochs=stop,
                  stop_after_steps=stop_step)
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
        for f in ("adapter_model.safetensors", "checkpoint/adapter/adapter_model.safetensors"):  # best, last
            a, b = load_file(out / f), load_file(tmp_path / run / f)
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


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
    params = {"rec_tune": {"variant": "rt", "train_domains": ["movie", "both"], "ks": [16, 64], "seeds": [3]}}
    names = [r.name for r in rec_grid(params)]
    assert names == ["rt_movie_k16_seed3", "rt_movie_k64_seed3", "rt_both_k16_seed3", "rt_both_k64_seed3"]
    assert rec_grid({"rec_tune": {"variant": "at"}}) == []
    assert RecRun("tallrec", "book", 64, 0).name == "tallrec_book_k64_seed0"
    with pytest.raises(ValueError):
        rec_grid({"rec_tune": {"variant": "nope"}})
    with pytest.raises(ValueError):
        TrainConfig(batch_size=10, micro_batch=4)


def test_a_non_finite_step_is_skipped_not_applied(tiny_backbone, tmp_path, monkeypatch):
    from tallrec import tuning

    calls = {"n": 0}
    real_loss_of = tuning.loss_of

    def nan_once(*args, **kwargs):  # the first micro-batch's loss (and so its gradient) is NaN
        loss, n = real_loss_of(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 1 else loss), n

    monkeypatch.setattr(tuning, "loss_of", nan_once)
    model, _, state, _ = _toy_run(tiny_backbone, tmp_path, epochs=1)
    assert state.skipped_steps == 1 and state.global_step == 3
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(torch.isfinite(p).all() for p in lora)
    assert state.best_auc is not None and np.isfinite(state.best_auc)


def test_tsv_curves_write_what_dvclive_writes_and_append_on_resume(tmp_path):
    from tallrec.tuning import TsvCurves

    live = TsvCurves(tmp_path / "run")
    for loss, auc in [(0.5, 0.6), (0.25, 0.7)]:
        live.log_metric("train/loss", loss)
        live.log_metric("valid/auc", auc)
        live.next_step()
    live.end()
    again = TsvCurves(tmp_path / "run")  # a resumed run continues the step count
    again.log_metric("train/loss", 0.125)
    again.next_step()
    metrics = tmp_path / "run" / "plots" / "metrics"
    assert (metrics / "train" / "loss.tsv").read_text() == "step\tloss\n0\t0.5\n1\t0.25\n2\t0.125\n"
    assert (metrics / "valid" / "auc.tsv").read_text() == "step\tauc\n0\t0.6\n1\t0.7\n"


def test_a_step_does_not_depend_on_how_the_batch_is_cut(tiny_backbone, tmp_path):
    """The batch is sorted by length and cut into micro-batches; the step's update must be the same
    for any micro-batch size (the gradient is one sum over the batch's answer tokens)."""
    df = toy_frame(8, 3)
    df = df.with_columns(input=pl.Series([x.replace("User Preference:", "User Preference:" + " Gamma," * i)
                                          for i, x in enumerate(df["input"])]))  # 8 different lengths
    weights = {}
    for micro in (1, 2, 8):
        torch.manual_seed(0)
        model, tok = load_base(tiny_backbone, FP32)
        model = add_lora(model, LoraParams(r=8, alpha=16, dropout=0.0))  # no dropout draws to differ
        cfg = TrainConfig(lr=1e-2, batch_size=8, micro_batch=micro, epochs=1, seed=0)
        ex = encode_all(tok, rec_prompts(df), df["output"].to_list(), cfg)
        assert len({len(ids) for ids, _ in ex}) > 1  # rows of different lengths, so padding is exercised
        train(model, tok, ex, cfg, tmp_path / f"micro{micro}", fingerprint=str(micro))
        weights[micro] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for micro in (2, 8):
        for name, w in weights[1].items():
            torch.testing.assert_close(weights[micro][name], w, rtol=1e-4, atol=1e-6)
