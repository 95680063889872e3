"""The parameter-free references on tiny frames whose AUC is known."""

from __future__ import annotations

import polars as pl
import pytest

from tallrec.metrics import auc
from tallrec.references import like_share, popularity, score


def frame(histories, labels, targets, history_ids=None):
    return pl.DataFrame(
        {
            "history_labels": histories,
            "history_item_ids": history_ids or [["x"] * len(h) for h in histories],
            "target_item_id": targets,
            "label": labels,
        }
    )


def test_like_share_is_the_share_of_liked_history_items():
    test = frame([[1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 0, 1], []], [1, 1, 0, 0], ["a", "b", "c", "d"])
    assert like_share(test).tolist() == [0.5, 0.75, 0.25, 0.5]
    assert auc(test["label"], like_share(test)) == pytest.approx(0.875)  # one tie between a positive and a negative


def test_popularity_counts_the_target_in_the_draws_targets_and_histories():
    shots = frame([[1, 0], [1]], [1, 0], ["a", "b"], history_ids=[["a", "c"], ["a"]])
    test = frame([[1], [0], [1]], [1, 0, 1], ["a", "b", "z"])
    assert popularity(test, shots).tolist() == [3.0, 1.0, 0.0]
    assert auc(test["label"], popularity(test, shots)) == pytest.approx(0.5)


def test_an_unknown_reference_is_named():
    with pytest.raises(ValueError, match="unknown reference 'mean'"):
        score("mean", frame([[1]], [1], ["a"]), frame([[1]], [1], ["a"]))
