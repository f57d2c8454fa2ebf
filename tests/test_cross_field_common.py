"""The cross-field study's shared pieces: the age axis, trackers at equal age, rows."""

import math

import numpy as np
import pytest

import stabilizers
from benchmarks.cross_field import common


@pytest.mark.parametrize("age", [0, 1, 3, 10, 30, 100, 1000])
def test_trackers_at_equal_age_have_that_mean_age(age):
    for mechanism in ("hard", "ema"):
        every, decay = common.tracker(mechanism, age)
        assert float(stabilizers.mean_age(every, decay)) == pytest.approx(age, rel=1e-3)
    assert common.tracker("none", 0) == (1, 0.0)
    every, decay = common.tracker("hard", age)
    assert decay == 0.0 and every == 2 * age + 1
    # at equal age, the EMA's decay is (N - 1) / (N + 1) of the hard copy's period N
    assert common.tracker("ema", age)[1] == pytest.approx((every - 1) / (every + 1))


def test_tracker_refuses_ages_a_hard_copy_cannot_have():
    with pytest.raises(ValueError, match="whole N"):
        common.tracker("hard", 0.25)
    assert common.tracker("hard", 0.25, exact=False) == (1, 0.0)
    with pytest.raises(ValueError, match="mechanism"):
        common.tracker("polyak", 3)
    with pytest.raises(ValueError, match="age"):
        common.tracker("ema", -1)


def test_ages_reach_a_tenth_of_the_run_and_points_put_zero_once():
    assert common.ages(5_000) == [0, 1, 3, 10, 30, 100, 300]
    assert common.ages(50_000, fraction=0.01) == [0, 1, 3, 10, 30, 100, 300]
    pts = common.points(["hard", "ema"], [0, 1, 3])
    assert pts == [("none", 0.0), ("hard", 1.0), ("hard", 3.0), ("ema", 1.0), ("ema", 3.0)]


def test_normalize_and_auc():
    np.testing.assert_allclose(common.normalize([10, 255, 500], 10, 500), [0, 0.5, 1])
    with pytest.raises(ValueError):
        common.normalize(1.0, 3.0, 3.0)
    assert common.auc([0, 1, 2], [0, 1, 1]) == pytest.approx(0.75)
    assert common.auc([0, 2], [np.nan, 1]) == pytest.approx(0.5)


def test_rows_need_every_key_and_store_non_finite_as_none(tmp_path):
    values = dict(
        field="rl",
        algorithm="dqn",
        task="CartPole-v1",
        mechanism="ema",
        age=3,
        seed=0,
        score=math.nan,
        score_name="return",
        normalized=0.5,
        failed=1,
        lag=0.1,
        auc=0.4,
        decay=0.75,
    )
    r = common.row(**values)
    assert r["score"] is None and r["failed"] is True and r["decay"] == 0.75
    with pytest.raises(ValueError, match="auc"):
        common.row(**{k: v for k, v in values.items() if k != "auc"})
    with pytest.raises(ValueError, match="field"):
        common.row(**{**values, "field": "vision"})
    path = tmp_path / "x" / "study.json"
    common.write(str(path), [r], {"commit": "abc"}, quick=True)
    back = common.read(str(path))
    assert back["rows"] == [r] and back["provenance"] == {"commit": "abc"} and back["quick"]
