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


def _weighted_aucs(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per row of `weights` (resamples x rows: how many times each row is drawn), the AUC of the rows
    repeated that many times: the share of (liked, disliked) pairs ranked right, ties counting one half.
    One sort serves every resample. NaN where a resample has one class only."""
    order = np.argsort(scores, kind="stable")
    _, starts = np.unique(scores[order], return_index=True)  # the groups of tied scores, ascending
    w = weights[:, order]
    positive = labels[order] == 1
    pos = np.add.reduceat(np.where(positive, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(positive, 0.0, w), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # disliked weight scored strictly lower than each group
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)


class UserBootstrap:
    """Resamples of the test users, drawn with replacement, each user keeping all its rows: the error of
    an AUC measured on few users (the movie test set holds 16). Seeded, so every row of a report is
    resampled on the very same users, which makes differences between rows paired."""

    def __init__(self, users, labels, n: int, seed: int):
        self.labels = np.asarray(labels)
        _, self._codes = np.unique(np.asarray(users), return_inverse=True)
        n_users = self._codes.max() + 1
        rng = np.random.default_rng(seed)
        self._draws = [rng.integers(0, n_users, n_users) for _ in range(n)]
        # resamples x rows: how often each row is drawn (its user's count)
        self.weights = np.stack([np.bincount(d, minlength=n_users)[self._codes] for d in self._draws]).astype(
            np.float64
        )

    @property
    def samples(self) -> list[np.ndarray]:
        """Each resample as row indices, every drawn user's rows in a block (what `weights` counts)."""
        rows_of = [np.flatnonzero(self._codes == u) for u in range(self._codes.max() + 1)]
        return [np.concatenate([rows_of[u] for u in draw]) for draw in self._draws]

    def aucs(self, runs) -> np.ndarray:
        """Per resample, the mean AUC over `runs` (rows × runs of scores, e.g. one column per training
        seed, or one vector) on that resample's users."""
        runs = np.asarray(runs, dtype=np.float64)
        runs = runs[:, None] if runs.ndim == 1 else runs
        return np.mean([_weighted_aucs(self.labels, runs[:, j], self.weights) for j in range(runs.shape[1])], axis=0)

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
