"""Aggregate statistics for evaluation: mean, interquartile mean, bootstrap CI.

The interquartile mean (IQM: the mean of the middle 50% of scores) and stratified
percentile-bootstrap confidence intervals follow Agarwal et al., "Deep RL at the
Edge of the Statistical Precipice" (NeurIPS 2021), which recommends them over
plain means for few-run RL evaluations.

Several training runs of one method (:func:`summarize_runs`) are scored on a
``(runs, tasks)`` matrix, as in that paper, but here every run is measured on every
task: a run's luck is shared by all its tasks. Resampling runs independently per
task (the paper's stratification, right when each task has runs of its own) would
average that luck away; :func:`runs_bootstrap_ci` resamples whole runs instead, and
the shared tasks with one draw for all runs. One run's evaluation seeds share their
tasks the same way (:func:`summarize_tasks` resamples tasks, not seed x task cells).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of a flat array of scores.

    The middle 50% is taken with fractional weights at the cut points, so the
    result is defined for any n >= 1 (for n divisible by 4 it is the plain mean of
    the sorted middle half).
    """
    x = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = x.size
    if n == 0:
        raise ValueError("iqm of an empty array")
    lo, hi = 0.25 * n, 0.75 * n
    # weight of sample i = length of [i, i+1) intersected with [lo, hi)
    idx = np.arange(n)
    weights = np.clip(np.minimum(idx + 1, hi) - np.maximum(idx, lo), 0.0, 1.0)
    return float(np.sum(weights * x) / np.sum(weights))


def bootstrap_ci(
    scores: np.ndarray,
    statistic=np.mean,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` over ``scores``.

    ``scores: (n,)`` or ``(runs, n)``; with a leading runs axis (seeds), samples are
    resampled within each run (stratified), as in Agarwal et al. (2021).
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        picks = [row[rng.integers(0, row.size, row.size)] for row in x]
        stats[b] = statistic(np.concatenate(picks))
    return _percentile_interval(stats, confidence)


def _percentile_interval(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of bootstrap replicates ``stats``."""
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


def runs_bootstrap_ci(
    scores: np.ndarray,
    statistic=np.mean,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over ``scores: (runs, tasks)``, where
    every training run was measured on the same tasks (a crossed design).

    Each replicate draws whole runs with replacement (the training run is the unit
    of variation: one run's rows stay together) and, independently, tasks with
    replacement, the same tasks for every drawn run (they are shared). Run-to-run
    and task-to-task differences both widen the interval; the tasks also carry the
    noise of each run's own mean (adaptation is random), which resampling a few
    runs alone would take for run-to-run agreement. With one run it is a bootstrap
    over tasks alone. Resampling both factors counts that noise somewhat more than
    once (conservative), while resampling n runs sees only (n - 1) / n of the
    variance of their means (optimistic with n = 3).
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) matrix, got shape {x.shape}")
    runs, tasks = x.shape
    rng = np.random.default_rng(seed)
    pick_runs = rng.integers(0, runs, (n_boot, runs))
    pick_tasks = rng.integers(0, tasks, (n_boot, tasks))
    resampled = x[pick_runs[:, :, None], pick_tasks[:, None, :]].reshape(n_boot, -1)
    if statistic is np.mean:
        stats = resampled.mean(axis=1)
    else:
        stats = np.array([statistic(row) for row in resampled])
    return _percentile_interval(stats, confidence)


@dataclass(frozen=True)
class Summary:
    """Aggregate of one set of scores (e.g. returns at one adaptation step)."""

    n: int
    mean: float
    std: float
    iqm: float
    ci_low: float  # 95% bootstrap CI of the mean
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _summary(x: np.ndarray, ci: tuple[float, float], mean: float | None = None) -> Summary:
    """:class:`Summary` of the scores ``x`` (any shape, taken flat) with a CI computed by
    the caller; ``mean`` defaults to the flat mean."""
    flat = x.ravel()
    return Summary(
        n=int(flat.size),
        mean=float(flat.mean()) if mean is None else mean,
        std=float(flat.std(ddof=1)) if flat.size > 1 else 0.0,
        iqm=iqm(flat),
        ci_low=ci[0],
        ci_high=ci[1],
    )


def summarize(scores: np.ndarray, seed: int = 0, n_boot: int = 2000) -> Summary:
    """Mean, std, IQM and 95% bootstrap CI of the mean; ``scores: (n,)`` or ``(runs, n)``."""
    x = np.asarray(scores, dtype=np.float64)
    return _summary(x, bootstrap_ci(x, np.mean, 0.95, n_boot, seed))


def summarize_tasks(scores: np.ndarray, seed: int = 0, n_boot: int = 2000) -> Summary:
    """:class:`Summary` of one run on held-out tasks, the task as the unit.

    ``scores: (seeds, tasks)``: every evaluation seed measures the same tasks, so a
    task's luck is shared by its seeds. The CI resamples tasks (each task's mean over
    the seeds), the variation a new set of held-out tasks would bring; resampling
    tasks independently within each seed (:func:`bootstrap_ci`'s stratification)
    would average that away and give an interval about ``sqrt(seeds)`` times too
    narrow when tasks differ more than seeds. Mean, ``std``, IQM and ``n`` are over
    the seed x task scores, as in :func:`summarize`.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be a non-empty (seeds, tasks) matrix, got shape {x.shape}")
    return _summary(x, runs_bootstrap_ci(x.mean(axis=0)[None], np.mean, 0.95, n_boot, seed))


def summarize_runs(scores: np.ndarray, seed: int = 0, n_boot: int = 2000) -> Summary:
    """:class:`Summary` of several training runs of one method, the run as the unit.

    ``scores: (runs, tasks)``, each run's score on each task (its mean over evaluation
    seeds). The mean is the mean of the runs' means; the IQM is over the run x task
    scores, as in Agarwal et al. (2021); the CI is :func:`runs_bootstrap_ci`'s; ``n``
    counts the run x task scores and ``std`` is their standard deviation.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"scores must be a (runs, tasks) matrix, got shape {x.shape}")
    return _summary(x, runs_bootstrap_ci(x, np.mean, 0.95, n_boot, seed), mean=float(x.mean(axis=1).mean()))
