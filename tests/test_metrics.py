"""UAUC and the user bootstrap on hand-made frames whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tallrec.metrics import UserBootstrap, auc, uauc


def test_uauc_weights_users_by_rows_and_skips_one_class_users():
    users = ["a"] * 4 + ["b"] * 2 + ["c"] * 3
    labels = [1, 1, 0, 0] + [1, 0] + [1, 1, 1]  # c has one class: no AUC, skipped
    scores = [0.9, 0.8, 0.1, 0.2] + [0.1, 0.9] + [0.5, 0.6, 0.7]  # a: 1.0, b: 0.0
    value, counted = uauc(users, labels, scores)
    assert counted == 2
    assert value == pytest.approx((1.0 * 4 + 0.0 * 2) / 6)


def test_uauc_is_nan_when_no_user_has_both_labels():
    value, counted = uauc(["a", "b"], [1, 0], [0.3, 0.4])
    assert math.isnan(value) and counted == 0


def test_the_bootstrap_of_one_user_returns_that_users_auc_every_time():
    labels = [1, 0, 1, 0, 0]
    scores = [0.9, 0.3, 0.2, 0.5, 0.1]
    values = UserBootstrap(["u"] * 5, labels, n=50, seed=3).aucs(scores)
    assert np.allclose(values, auc(labels, scores))


def test_the_bootstrap_keeps_every_row_of_a_drawn_user_and_is_seeded():
    users = np.repeat(np.arange(20), 5)
    rng = np.random.default_rng(0)
    labels, scores = rng.integers(0, 2, 100), rng.random(100)
    a, b = UserBootstrap(users, labels, n=30, seed=7), UserBootstrap(users, labels, n=30, seed=7)
    assert all(
        len(s) % 5 == 0 and (s.reshape(-1, 5) == s.reshape(-1, 5)[:, :1] + np.arange(5)).all() for s in a.samples
    )
    assert np.array_equal(a.aucs(scores), b.aucs(scores))
    assert not np.array_equal(a.aucs(scores), UserBootstrap(users, labels, n=30, seed=8).aucs(scores))


def test_the_bootstrap_averages_runs_and_its_auc_matches_sklearn():
    users = np.repeat(np.arange(10), 3)
    rng = np.random.default_rng(1)
    labels, runs = rng.integers(0, 2, 30), rng.random((30, 2))
    boot = UserBootstrap(users, labels, n=5, seed=0)
    rows = boot.samples[0]
    expected = np.mean([auc(labels[rows], runs[rows, j]) for j in range(2)])
    assert boot.aucs(runs)[0] == pytest.approx(expected)


def test_the_bootstrap_counts_ties_and_repeated_users_as_sklearn_does_on_the_repeated_rows():
    users = np.repeat(np.arange(12), 4)
    rng = np.random.default_rng(5)
    labels, scores = rng.integers(0, 2, 48), rng.integers(0, 4, 48) / 4  # four score levels: many ties
    boot = UserBootstrap(users, labels, n=40, seed=1)
    expected = [auc(labels[rows], scores[rows]) for rows in boot.samples]
    assert np.allclose(boot.aucs(scores), expected, equal_nan=True)
    one_class = UserBootstrap([0, 0, 1, 1], [1, 1, 0, 0], n=20, seed=0).aucs([0.1, 0.2, 0.3, 0.4])
    assert np.isnan(one_class).any() and not np.isnan(one_class).all()  # a resample of user 0 alone has no AUC


def test_the_paired_p_value_tells_a_real_difference_from_none():
    users = np.repeat(np.arange(40), 4)
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 160)
    good = labels + rng.normal(0, 0.3, 160)
    noise = rng.random(160)
    boot = UserBootstrap(users, labels, n=300, seed=0)
    assert boot.paired_p(good, noise) < 0.01
    assert boot.paired_p(good, good + 1e-9 * rng.random(160)) > 0.05
    low, high = boot.interval(good)
    assert low < auc(labels, good) < high


def _clustered_users(seed: int, n_users: int = 30, rows: int = 8):
    """Users whose rows are strongly alike (a user-level offset in both runs' scores), so resampling rows
    instead of users would give intervals far too narrow."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), rows)
    offset = np.repeat(rng.normal(0, 1.0, n_users), rows)
    labels = (offset + rng.normal(0, 1.0, users.size) > 0).astype(int)
    a = labels * 0.6 + offset + rng.normal(0, 1.0, users.size)
    b = labels * 0.3 + offset + rng.normal(0, 1.0, users.size)
    return users, labels, a, b


def test_the_user_bootstrap_agrees_with_scipys_bootstrap_over_users():
    """An independent implementation: scipy.stats.bootstrap resampling user ids (percentile method) gives
    the same 95 % interval and the same spread of the paired difference, up to Monte Carlo error; the
    p-value matches the normal approximation built from scipy's standard error."""
    from scipy import stats

    users, labels, a, b = _clustered_users(0)
    boot = UserBootstrap(users, labels, n=1000, seed=0)
    rows_of = {u: np.flatnonzero(users == u) for u in np.unique(users)}

    def on_users(statistic):
        def value(ids, axis=-1):
            ids = np.atleast_2d(ids).astype(int)
            return np.array([statistic(np.concatenate([rows_of[u] for u in draw])) for draw in ids])

        return value

    def scipy_boot(statistic):
        return stats.bootstrap(
            (np.unique(users),),
            on_users(statistic),
            n_resamples=1000,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(1),
        )

    auc_a = scipy_boot(lambda r: auc(labels[r], a[r]))
    assert np.allclose(boot.interval(a), (auc_a.confidence_interval.low, auc_a.confidence_interval.high), atol=0.02)
    diff = scipy_boot(lambda r: auc(labels[r], a[r]) - auc(labels[r], b[r]))
    ours = boot.aucs(a) - boot.aucs(b)
    assert np.std(ours, ddof=1) == pytest.approx(diff.standard_error, rel=0.1)
    normal_p = 2 * stats.norm.sf(abs(auc(labels, a) - auc(labels, b)) / diff.standard_error)
    assert 0.005 < normal_p < 0.3  # the case is neither trivial nor hopeless
    assert boot.paired_p(a, b) == pytest.approx(normal_p, rel=0.5, abs=0.01)
    # resampling rows ignores how alike a user's rows are: its interval would be much narrower
    row_boot = UserBootstrap(np.arange(users.size), labels, n=1000, seed=0)
    assert np.diff(row_boot.interval(a))[0] < 0.85 * np.diff(boot.interval(a))[0]
