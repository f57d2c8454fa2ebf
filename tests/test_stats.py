"""benchmarks.stats: IQM, its label, bootstrap and stratified bootstrap against hand values."""

import numpy as np
import pytest

from benchmarks import stats


def test_iqm_is_the_mean_of_the_middle_half():
    assert stats.iqm(np.arange(1, 9)) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert stats.iqm([10, 1, 2, 3, 100]) == pytest.approx(5.0)  # trims one per end: 2, 3, 10
    assert stats.iqm([0.0, 0.0, 0.0, 1000.0]) == pytest.approx(0.0)  # middle two
    assert stats.iqm([1.0, 2.0, 9.0]) == pytest.approx(4.0)  # < 4 runs: the mean
    np.testing.assert_allclose(stats.iqm([[1, 2, 3, 4], [4, 4, 4, 40]], axis=-1), [2.5, 4.0])


def test_label_says_mean_below_four_runs():
    assert [stats.label(n) for n in (1, 2, 3, 4, 8)] == ["mean"] * 3 + ["IQM"] * 2


def test_bootstrap_matches_a_hand_written_resampling_loop():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    low, high = stats.bootstrap_ci(x, np.mean, resamples=500, seed=7, confidence=0.9)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, x.size, size=(500, x.size))
    means = np.array([x[row].mean() for row in idx])
    assert low == pytest.approx(np.quantile(means, 0.05))
    assert high == pytest.approx(np.quantile(means, 0.95))
    assert low <= x.mean() <= high


def test_bootstrap_of_one_run_is_that_run_and_of_equal_runs_is_a_point():
    assert stats.bootstrap_ci([2.5]) == (2.5, 2.5)
    low, high = stats.bootstrap_ci([7.0] * 5)
    assert low == high == 7.0


def test_stratified_bootstrap_keeps_each_tasks_weight():
    # Constant tasks: every stratified resample pools 2 runs of 0 and 6 runs of 1, so the
    # mean is exactly 0.75 each time; a pooled bootstrap would move with the task mix.
    tasks = [np.zeros(2), np.ones(6)]
    low, high = stats.stratified_bootstrap_ci(tasks, np.mean)
    assert low == pytest.approx(0.75) and high == pytest.approx(0.75)
    pooled_low, pooled_high = stats.bootstrap_ci(np.concatenate(tasks), np.mean)
    assert pooled_low < 0.75 < pooled_high


def test_stratified_bootstrap_matches_a_hand_written_loop():
    tasks = [np.array([0.1, 0.5, 0.9]), np.array([0.2, 0.4, 0.6, 0.8, 1.0])]
    low, high = stats.stratified_bootstrap_ci(tasks, stats.iqm, resamples=300, seed=3)
    rng = np.random.default_rng(3)
    draws = [t[rng.integers(0, t.size, size=(300, t.size))] for t in tasks]
    values = [stats.iqm(np.concatenate([d[r] for d in draws])) for r in range(300)]
    assert low == pytest.approx(np.quantile(values, 0.025))
    assert high == pytest.approx(np.quantile(values, 0.975))


def test_summary_names_its_statistic():
    assert stats.summary([1.0, 2.0, 3.0])["statistic"] == "mean"
    s = stats.summary(np.arange(8.0))
    assert s["statistic"] == "IQM" and s["n"] == 8 and s["value"] == pytest.approx(3.5)
    assert s["low"] <= s["value"] <= s["high"]


def test_bad_input():
    with pytest.raises(ValueError, match="every task"):
        stats.stratified_bootstrap_ci([np.ones(3), np.array([])])
    with pytest.raises(ValueError, match="confidence"):
        stats.bootstrap_ci(np.arange(5.0), confidence=1.5)
