"""Aggregate maths on known numbers."""

from __future__ import annotations

import numpy as np
import pytest

from robometa.eval.protocol import MethodResult
from robometa.eval.stats import bootstrap_ci, iqm, summarize, summarize_tasks


def test_iqm_known_values():
    # n divisible by 4: mean of the sorted middle half
    assert iqm([1, 2, 3, 4, 5, 6, 7, 100]) == pytest.approx((3 + 4 + 5 + 6) / 4)
    assert iqm([10, -3, 7, 1]) == pytest.approx((1 + 7) / 2)
    # n = 5: middle half is [1.25, 3.75): 0.75*x1 + x2 + 0.75*x3 over 2.5
    assert iqm([0, 1, 2, 3, 1000]) == pytest.approx((0.75 * 1 + 2 + 0.75 * 3) / 2.5)
    assert iqm([4.0]) == 4.0
    with pytest.raises(ValueError):
        iqm([])


def test_iqm_ignores_outliers_mean_does_not():
    x = np.r_[np.ones(98), -1e6, 1e6 + 5]
    assert iqm(x) == pytest.approx(1.0)


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(3.0, 1.0, 20)
    big = rng.normal(3.0, 1.0, 2000)
    lo_s, hi_s = bootstrap_ci(small, seed=1)
    lo_b, hi_b = bootstrap_ci(big, seed=1)
    assert lo_s < small.mean() < hi_s
    assert lo_b < big.mean() < hi_b
    assert (hi_b - lo_b) < (hi_s - lo_s) / 5
    # normal theory: 95% half-width ~ 1.96 * s / sqrt(n)
    assert (hi_b - lo_b) / 2 == pytest.approx(1.96 * big.std() / np.sqrt(big.size), rel=0.15)


def test_bootstrap_of_constant_is_degenerate_and_seeded():
    assert bootstrap_ci(np.full(10, 2.5)) == (2.5, 2.5)
    x = np.arange(30.0)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)


def test_stratified_bootstrap_keeps_runs_separate():
    runs = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]])
    # resampling within runs keeps one of each: the mean is always 5
    assert bootstrap_ci(runs) == (5.0, 5.0)


def test_summary_fields():
    s = summarize(np.array([1.0, 2.0, 3.0, 4.0]))
    assert s.n == 4 and s.mean == 2.5 and s.iqm == 2.5
    assert s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert s.ci_low <= 2.5 <= s.ci_high
    assert set(s.to_dict()) == {"n", "mean", "std", "iqm", "ci_low", "ci_high"}


def test_one_run_ci_resamples_held_out_tasks_not_seed_task_cells():
    # 10 held-out tasks of very different difficulty, measured identically by 9
    # evaluation seeds: the seeds add no information about a new task set, so the CI
    # is a bootstrap over the 10 task means (half-width ~ 1.96 * 2.87 / sqrt(10) = 1.8),
    # not over 90 independent cells (~0.6).
    scores = np.tile(np.arange(10.0), (9, 1))  # (seeds, tasks)
    s = summarize_tasks(scores, seed=2)
    assert s.n == 90 and s.mean == 4.5
    assert 3.0 < s.ci_high - s.ci_low < 4.5
    # the same through an evaluated method's curve (returns and success)
    result = MethodResult("maml", "adapt_step", scores[:, :, None], success=(scores[:, :, None] >= 5) * 1.0)
    row = result.aggregate()[0]
    assert 3.0 < row["ci_high"] - row["ci_low"] < 4.5
    assert row["success_ci_high"] - row["success_ci_low"] > 0.4
    # seeds that disagree on a task widen nothing beyond their task means
    noisy = scores + np.random.default_rng(0).normal(0, 1, scores.shape)
    assert summarize_tasks(noisy, seed=2).ci_low == pytest.approx(
        summarize_tasks(noisy.mean(axis=0, keepdims=True).repeat(9, 0), seed=2).ci_low
    )
    with pytest.raises(ValueError, match="seeds, tasks"):
        summarize_tasks(np.arange(3.0))
