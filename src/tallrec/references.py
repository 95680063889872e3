"""Parameter-free references: scores that learn nothing, the floor a learned model must clear.

- like_share: the share of liked items in the user's history (the user's general taste; on the movie
  test set, whose 1,000 rows belong to 16 users, it is most of what an AUC can see);
- popularity: how often the target item occurs in the K-shot draw, as a target or in a history.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl

REFERENCES = ("like_share", "popularity")
READS_THE_DRAW = {"popularity"}  # like_share ignores K and seed: scored once per K, with the first seed


def like_share(test: pl.DataFrame) -> np.ndarray:
    """Per row, the share of the history's items the user liked (0.5 for an empty history)."""
    return np.array([float(np.mean(h)) if len(h) else 0.5 for h in test["history_labels"].to_list()])


def popularity(test: pl.DataFrame, shots: pl.DataFrame) -> np.ndarray:
    """Per row, how many times the target item occurs in the K-shot draw (targets and histories)."""
    counts = Counter(shots["target_item_id"].to_list())
    for history in shots["history_item_ids"].to_list():
        counts.update(history)
    return np.array([float(counts[i]) for i in test["target_item_id"].to_list()])


def score(name: str, test: pl.DataFrame, shots: pl.DataFrame) -> np.ndarray:
    if name == "like_share":
        return like_share(test)
    if name == "popularity":
        return popularity(test, shots)
    raise ValueError(f"unknown reference {name!r} (known: {', '.join(REFERENCES)})")
