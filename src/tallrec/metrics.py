"""AUC, the one definition every stage and baseline reports."""

from __future__ import annotations

import numpy as np


def auc(labels, scores) -> float:
    """ROC AUC; NaN when it is undefined (one class only) or the scores are not all finite (a diverged
    model has no ranking to measure; early stopping then keeps an earlier epoch)."""
    from sklearn.metrics import roc_auc_score

    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if len(np.unique(labels)) < 2 or not np.isfinite(scores).all():
        return float("nan")
    return float(roc_auc_score(labels, scores))
