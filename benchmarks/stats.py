"""Aggregate statistics over seeds: interquartile mean and bootstrap intervals.

The interquartile mean (IQM) is the mean of the middle 50% of runs (Agarwal et al.,
Deep reinforcement learning at the edge of the statistical precipice, NeurIPS 2021):
robust to a few outlying seeds, yet less noisy than the median.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _stats


def iqm(x, axis: int = -1) -> np.ndarray:
    """Interquartile mean along `axis` (the 25% trimmed mean; the mean for < 4 values)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[axis] < 4:
        return np.mean(x, axis=axis)
    return _stats.trim_mean(x, 0.25, axis=axis)


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
      `(low, high)`, each of shape `x.shape[:-1]`.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if n < 2:
        v = statistic(x, axis=-1)
        return v, v
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    samples = statistic(x[..., idx], axis=-1)  # [..., resamples]
    alpha = (1.0 - confidence) / 2.0
    return np.quantile(samples, alpha, axis=-1), np.quantile(samples, 1.0 - alpha, axis=-1)
