"""Aggregate statistics for evaluation: mean, interquartile mean, bootstrap CI.

The interquartile mean (IQM: the mean of the middle 50% of scores) and stratified
percentile-bootstrap confidence intervals follow Agarwal et al., "Deep RL at the
Edge of the Statistical Precipice" (NeurIPS 2021), which recommends them over
plain means for few-run RL evaluations.
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
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


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


def summarize(scores: np.ndarray, seed: int = 0, n_boot: int = 2000) -> Summary:
    """Mean, std, IQM and 95% bootstrap CI of the mean; ``scores: (n,)`` or ``(runs, n)``."""
    x = np.asarray(scores, dtype=np.float64)
    flat = x.ravel()
    low, high = bootstrap_ci(x, np.mean, 0.95, n_boot, seed)
    return Summary(
        n=int(flat.size),
        mean=float(flat.mean()),
        std=float(flat.std(ddof=1)) if flat.size > 1 else 0.0,
        iqm=iqm(flat),
        ci_low=low,
        ci_high=high,
    )
