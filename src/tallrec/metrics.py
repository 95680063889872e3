"""AUC, the one definition every stage and baseline reports, and what the report adds to it: per-user
AUC (UAUC) and confidence intervals that resample test users rather than rows."""

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


def uauc(users, labels, scores) -> tuple[float, int]:
    """(UAUC, users counted): the AUC of each user's own rows, averaged over the users who have both a
    liked and a disliked row, weighted by their number of rows (users with one class have no AUC and
    are skipped, as in CoLLM and BinLLM). NaN when no user has both."""
    users, labels, scores = np.asarray(users), np.asarray(labels), np.asarray(scores, dtype=np.float64)
    total, weight, counted = 0.0, 0, 0
    for user in np.unique(users):
        rows = users == user
        value = auc(labels[rows], scores[rows])
        if not np.isnan(value):
            total, weight, counted = total + value * rows.sum(), weight + rows.sum(), counted + 1
    return (total / weight if weight else float("nan")), counted


def _rank_auc(labels: np.ndarray, ranks: np.ndarray) -> float:
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


class UserBootstrap:
    """Resamples of the test users, drawn with replacement, each user keeping all its rows: the error of
    an AUC measured on few users (the movie test set holds 16). Seeded, so every row of a report is
    resampled on the very same users, which makes differences between rows paired."""

    def __init__(self, users, labels, n: int, seed: int):
        from scipy.stats import rankdata

        self._rankdata = rankdata
        self.labels = np.asarray(labels)
        _, codes = np.unique(np.asarray(users), return_inverse=True)
        rows_of = [np.flatnonzero(codes == u) for u in range(codes.max() + 1)]
        rng = np.random.default_rng(seed)
        self.samples = [np.concatenate([rows_of[u] for u in rng.integers(0, len(rows_of), len(rows_of))]) for _ in range(n)]

    def aucs(self, runs) -> np.ndarray:
        """Per resample, the mean AUC over `runs` (rows × runs of scores, e.g. one column per training
        seed, or one vector) on that resample's users."""
        runs = np.asarray(runs, dtype=np.float64)
        runs = runs[:, None] if runs.ndim == 1 else runs
        out = np.empty(len(self.samples))
        for i, rows in enumerate(self.samples):
            labels = self.labels[rows]
            out[i] = np.mean([_rank_auc(labels, self._rankdata(runs[rows, j])) for j in range(runs.shape[1])])
        return out

    def interval(self, runs, level: float = 0.95) -> tuple[float, float]:
        values = self.aucs(runs)
        values = values[~np.isnan(values)]
        return tuple(float(q) for q in np.quantile(values, [(1 - level) / 2, (1 + level) / 2]))

    def paired_p(self, a, b) -> float:
        """Two-sided p-value of "a and b rank equally well": twice the smaller share of resamples on
        which one row's AUC is not above the other's (with the +1 correction, so never 0)."""
        diff = self.aucs(a) - self.aucs(b)
        diff = diff[~np.isnan(diff)]
        tail = min((diff <= 0).sum(), (diff >= 0).sum())
        return float(min(1.0, 2 * (tail + 1) / (len(diff) + 1)))
