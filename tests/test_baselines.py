"""Baselines: output shapes, determinism, and learning a synthetic preference signal (AUC > 0.9)."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest
import torch

from tallrec.baselines import base
from tallrec.baselines.base import Vocab
from tallrec.config import BaselineParams, Params, as_dict, with_changes
from tallrec.baselines.run import builder, run_one
from tallrec.names import BASELINES, TEXT_BASELINES

N_ITEMS, N_GROUPS, TEXT_DIM = 20, 4, 8

CFG = BaselineParams(
    dim=16,
    hidden=32,
    bert_hidden=32,
    bert_layers=2,
    bert_bf16=False,
    caser_h_filters=4,
    caser_v_filters=2,
    sasrec_blocks=1,
    dropout=0.0,
    weight_decays=(1e-6,),
    epochs=10,
    patience=2,
    batch_size=64,
    lr=2e-2,
    min_count=1,
    val_size=None,
    threads=1,
)
L = 10  # history length of the synthetic rows


def synthetic(n: int, seed: int, short: bool = False) -> pl.DataFrame:
    """Each user likes one group of items (id % 4); the history shows liked/disliked items; the target
    is liked iff it is in the user's group. A model must read the history to beat chance."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n):
        group = rng.integers(N_GROUPS)
        length = rng.integers(3, 11) if short else 10
        ids, labels = [], []
        for _ in range(length):
            liked = rng.random() < 0.5
            item = rng.choice([i for i in range(N_ITEMS) if (i % N_GROUPS == group) == liked])
            ids.append(f"i{item}")
            labels.append(int(liked))
        target = rng.integers(N_ITEMS)
        rows.append(
            {
                "domain": "syn",
                "user": f"u{seed}_{u}",
                "history_item_ids": ids,
                "history_labels": labels,
                "target_item_id": f"i{target}",
                "label": int(target % N_GROUPS == group),
            }
        )
    return pl.DataFrame(rows, schema_overrides={"history_labels": pl.List(pl.Int64), "label": pl.Int8})


@pytest.fixture(scope="module")
def splits():
    return synthetic(800, 0, short=True), synthetic(200, 1), synthetic(300, 2)


@pytest.fixture(scope="module")
def text():
    torch.manual_seed(0)
    table = torch.nn.functional.normalize(torch.randn(N_ITEMS + 1, TEXT_DIM), dim=-1)
    return table, {f"i{i}": i for i in range(N_ITEMS)}


def text_for(name, text):
    return text if name in TEXT_BASELINES else (None, None)


def test_padding_repeats_the_last_item():
    ids, labels = base.pad_history(["a", "b", "c"], [1, 0, 1], 10)
    assert ids == ["a", "b", "c"] + ["c"] * 7 and labels == [1, 0, 1] + [1] * 7
    assert base.pad_history(["a", "b", "c"], [1, 0, 1], 2) == (["b", "c"], [0, 1])  # data.<domain>.history_len


def test_unseen_items_share_unk(splits):
    train = splits[0]
    vocab = Vocab.build(train.head(5), min_count=1)
    batch = base.encode(
        pl.DataFrame({**train.head(1).to_dict(as_series=False), "target_item_id": ["never-seen"]}), vocab, L
    )
    assert batch["target"].tolist() == [base.UNK]
    assert abs(float(vocab.popularity.sum()) - 1) < 1e-6


@pytest.mark.parametrize("name", BASELINES)
def test_output_shape(name, splits, text):
    train = splits[0]
    vocab = Vocab.build(train, CFG.min_count)
    table, index = text_for(name, text)
    make_model, _ = builder(name, CFG, vocab, table, index, L)
    model = make_model()
    batch = base.take(base.encode(train, vocab, L, index), torch.arange(7))
    assert model(batch).shape == (7,)
    h = model.encode(batch)
    assert model.head(h, model.items(batch, "candidates")).shape == (7, vocab.size)  # DROS scores every item
    loss = model.loss(batch)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("name", ["gru4rec", "gru_bert"])
def test_history_labels_switch(name, splits, text):
    """history_labels: false hides the like/dislike of the history items (ids only, as the paper's baselines)."""
    train = splits[0]
    vocab = Vocab.build(train, CFG.min_count)
    table, index = text_for(name, text)
    batch = base.take(base.encode(train, vocab, L, index), torch.arange(7))
    flipped = {**batch, "hist_label": 1 - batch["hist_label"]}
    for labels_on in (True, False):
        torch.manual_seed(0)
        model = builder(name, dataclasses.replace(CFG, history_labels=labels_on), vocab, table, index, L)[0]().eval()
        with torch.no_grad():
            same = torch.equal(model(batch), model(flipped))
        assert same is not labels_on


@pytest.mark.parametrize("name", BASELINES)
def test_learns_synthetic_signal_and_is_deterministic(name, splits, text):
    train, valid, test = splits
    table, index = text_for(name, text)
    first = run_one(name, CFG, train, valid, test, table, index, seed=0, history_len=L)
    assert first["auc"] > 0.9, f"{name} reached test AUC {first['auc']:.3f}"
    if name == "dros_bert":  # determinism of the shared loop, on the model with the most moving parts
        cfg = dataclasses.replace(CFG, epochs=1)
        a = run_one(name, cfg, train, valid, test, table, index, seed=3, history_len=L)
        b = run_one(name, cfg, train, valid, test, table, index, seed=3, history_len=L)
        np.testing.assert_array_equal(a["scores"], b["scores"])


def test_grid_in_worker_processes_matches_one_process(splits, tmp_path, monkeypatch):
    """The DVC stage's runner: two worker processes give the same files as one, in grid order."""
    import json

    from tallrec import paths
    from tallrec.baselines.run import run_model

    monkeypatch.chdir(tmp_path)
    train, valid, test = splits
    for split, df in (("valid", valid), ("test", test)):
        paths.split_path("movie", split).parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(paths.split_path("movie", split))
    for seed in (0, 1):
        paths.shot_path("movie", 16, seed).parent.mkdir(parents=True, exist_ok=True)
        train.sample(n=64, seed=seed).write_parquet(paths.shot_path("movie", 16, seed))
    section = {
        **as_dict(CFG),
        "weight_decays": [1e-4, 1e-6],
        "epochs": 2,
        "domains": ["movie"],
        "ks": [16],
        "seeds": [0, 1],
    }
    outputs = {}
    for workers, threads in ((1, 1), (2, 2)):  # one thread per run either way
        params = with_changes(
            Params(),
            {
                "sample": {"ks": [16]},
                "rec_tune": {"ks": [16]},
                "data": {"movie": {"history_len": L}},
                "baselines": {**section, "workers": workers, "threads": threads},
            },
        )
        summary = run_model("gru4rec", params)
        scores = [pl.read_parquet(paths.baseline_predictions_path("gru4rec", "movie", 16, s))["score"] for s in (0, 1)]
        outputs[workers] = (summary, scores)
        assert json.loads(paths.baseline_metrics_path("gru4rec").read_text()) == summary
    assert outputs[1][0] == outputs[2][0]
    for a, b in zip(outputs[1][1], outputs[2][1]):
        np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    assert set(outputs[1][0]["movie"]["k16"]["per_seed"]) == {"seed0", "seed1"}


def test_text_embed_is_empty_without_a_text_model(splits, tmp_path, monkeypatch):
    """The default pipeline (ID models only) spends nothing on text vectors; a text-aware model that
    meets such a table says what to change instead of failing on a missing row."""
    from tallrec import paths
    from tallrec.baselines.text_embed import load_text_table, text_embed
    from tallrec.io import DataError

    monkeypatch.chdir(tmp_path)
    for split, df in (("valid", splits[1]), ("test", splits[2])):
        texted = df.with_columns(history_texts=pl.col("history_item_ids"), target_text=pl.col("target_item_id"))
        paths.split_path("movie", split).parent.mkdir(parents=True, exist_ok=True)
        texted.write_parquet(paths.split_path("movie", split))
    out = text_embed("movie", with_changes(Params(), {"baselines": {"models": ["gru4rec", "sasrec"]}}))
    table = pl.read_parquet(out)
    assert table.is_empty() and table.columns == ["item_id", "embedding"]
    with pytest.raises(DataError, match="add gru_bert or dros_bert"):
        load_text_table("movie")


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_dros_loss_is_mse_plus_alpha_beta_log_mean_exp(beta):
    """DROS's robust term is beta * log E_nominal[exp(loss_j / beta)], with loss_j the squared error of
    item j (label 0, the target's own label for the target); checked item by item in float64."""
    from types import SimpleNamespace

    class Tiny(torch.nn.Module):  # the three methods dros_loss uses, on fixed random vectors
        def __init__(self, n_users, n_items, dim=4):
            super().__init__()
            self.user, self.item, self.head = (
                torch.nn.Embedding(n_users, dim),
                torch.nn.Embedding(n_items, dim),
                base.Head(dim, dim, dim),
            )

        def encode(self, batch):
            return self.user(batch["user"])

        def items(self, batch, key):
            return self.item(batch["target"] if key == "target" else torch.arange(self.item.num_embeddings))

    torch.manual_seed(0)
    n_items, rows = 6, 5
    model = Tiny(rows, n_items)
    batch = {
        "user": torch.arange(rows),
        "target": torch.tensor([1, 4, 0, 4, 5]),
        "label": torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0]),
    }
    popularity = torch.tensor([0.05, 0.3, 0.1, 0.25, 0.2, 0.1])
    cfg = SimpleNamespace(dros_alpha=0.7, dros_beta=beta)
    with torch.no_grad():
        got = float(base.dros_loss(model, batch, cfg, popularity))
        scores = torch.sigmoid(model.head(model.encode(batch), model.items(batch, "candidates"))).double().tolist()
    p = popularity.double().tolist()
    mse, robust = 0.0, 0.0
    for b in range(rows):
        t, y = int(batch["target"][b]), float(batch["label"][b])
        mse += (scores[b][t] - y) ** 2 / rows
        losses = [(scores[b][j] - (y if j == t else 0.0)) ** 2 for j in range(n_items)]
        robust += beta * np.log(sum(p[j] * np.exp(losses[j] / beta) for j in range(n_items))) / rows
    assert got == pytest.approx(mse + 0.7 * robust, rel=1e-5)


def test_a_one_class_validation_split_is_refused_not_a_coin_flip(splits, tmp_path, monkeypatch):
    """baselines/base.py had its own AUC, 0.5 for one class: a one-class validation set looked like a coin
    flip and chose the weight decay and the epoch silently. The one AUC (tallrec.metrics) is NaN there,
    and the runner refuses such a split in one line before training."""
    from tallrec import paths
    from tallrec.baselines.run import run_model
    from tallrec.io import DataError
    from tallrec.metrics import auc

    assert np.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
    monkeypatch.chdir(tmp_path)
    train, valid, test = splits
    for split, df in (("valid", valid.with_columns(label=pl.lit(1, dtype=pl.Int8))), ("test", test)):
        paths.split_path("movie", split).parent.mkdir(parents=True, exist_ok=True)
        df.write_parquet(paths.split_path("movie", split))
    paths.shot_path("movie", 16, 0).parent.mkdir(parents=True, exist_ok=True)
    train.sample(n=64, seed=0).write_parquet(paths.shot_path("movie", 16, 0))
    section = {**as_dict(CFG), "epochs": 1, "domains": ["movie"], "ks": [16], "seeds": [0], "workers": 1}
    params = with_changes(
        Params(),
        {"sample": {"ks": [16]}, "rec_tune": {"ks": [16]}, "data": {"movie": {"history_len": L}}, "baselines": section},
    )
    with pytest.raises(DataError, match=r"valid.parquet: the validation subset \(200 rows\) holds one class only"):
        run_model("gru4rec", params)
    assert not paths.baseline_metrics_path("gru4rec").exists()
