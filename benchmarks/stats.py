"""Aggregate statistics over seeds: interquartile mean and bootstrap intervals.

The interquartile mean (IQM) is the mean of the middle 50% of runs, the 25% trimmed mean
(Agarwal et al., Deep reinforcement learning at the edge of the statistical precipice,
NeurIPS 2021): robust to a few outlying seeds, yet less noisy than the median. With fewer
than 4 runs nothing is trimmed and it is the plain mean: `label(n)` says which, so that a
table never calls a mean of 3 seeds an IQM.

Intervals are percentile bootstraps over runs. A table that aggregates several tasks
resamples the runs of each task separately (`stratified_bootstrap_ci`), as rliable does,
so every resample keeps each task's number of runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _stats

MIN_TRIMMED = 4  # runs from which the 25% trimmed mean trims at least one run per end


def iqm(x, axis: int = -1) -> np.ndarray:
    """Interquartile mean along `axis` (the 25% trimmed mean; the mean for < 4 values)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[axis] < MIN_TRIMMED:
        return np.mean(x, axis=axis)
    return _stats.trim_mean(x, 0.25, axis=axis)


def label(n: int) -> str:
    """What `iqm` of `n` runs is: "IQM" from 4 runs on, "mean" below."""
    return "IQM" if n >= MIN_TRIMMED else "mean"


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}")
    alpha = (1.0 - confidence) / 2.0
    return np.quantile(samples, alpha, axis=-1), np.quantile(samples, 1.0 - alpha, axis=-1)


def bootstrap_ci(
    x, statistic=iqm, *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of `statistic` over the last axis (the seeds).

    Args:
      x: array `[..., seeds]`.
      statistic: reduction over the last axis, e.g. `iqm` or `np.mean`.
      confidence: coverage of the interval.
      resamples: bootstrap resamples.
      seed: seed of the resampling (the interval is deterministic given it).

    Returns:
      `(low, high)`, each of shape `x.shape[:-1]`; both equal the statistic for one seed.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if n < 2:
        v = statistic(x, axis=-1)
        return v, v
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    return _percentiles(statistic(x[..., idx], axis=-1), confidence)


def stratified_bootstrap_ci(
    tasks: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray] = iqm,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of `statistic` over all tasks' runs pooled, resampled per task.

    Each resample draws, for every task t with n_t runs, n_t runs of that task with
    replacement, pools the draws of all tasks and applies `statistic` to the pool. Tasks
    keep their weight in every resample (Agarwal et al. 2021, "stratified bootstrap").

    Args:
      tasks: one 1-d array of (normalized) scores per task; lengths may differ.
      statistic: reduction over the last axis of the pooled scores.
      confidence, resamples, seed: as in `bootstrap_ci`.

    Returns:
      `(low, high)` floats.
    """
    arrays = [np.asarray(t, dtype=np.float64).reshape(-1) for t in tasks]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("stratified_bootstrap_ci needs at least one run for every task")
    rng = np.random.default_rng(seed)
    pooled = np.concatenate(
        [a[rng.integers(0, a.size, size=(resamples, a.size))] for a in arrays], axis=1
    )
    low, high = _percentiles(statistic(pooled, axis=-1), confidence)
    return float(low), float(high)


def summary(x, statistic=iqm, **bootstrap) -> dict:
    """`{"value", "low", "high", "n", "statistic"}` of 1-d runs: the point estimate, its
    bootstrap interval and what the estimate is (`label(n)` for the IQM)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    low, high = bootstrap_ci(x, statistic, **bootstrap)
    name = label(x.size) if statistic is iqm else getattr(statistic, "__name__", "statistic")
    return {
        "value": float(statistic(x, axis=-1)),
        "low": float(low),
        "high": float(high),
        "n": int(x.size),
        "statistic": name,
    }
