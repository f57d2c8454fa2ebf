"""Schedules: BYOL's cosine momentum, CT's N(k) and mu(k), iCT's curriculum, against the papers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stabilizers
from stabilizers import schedules


def test_cosine_momentum_endpoints_and_midpoint():
    s = schedules.cosine_momentum(0.996, 1000)
    assert float(s(0)) == pytest.approx(0.996)
    assert float(s(1000)) == pytest.approx(1.0)
    assert float(s(5000)) == pytest.approx(1.0)  # clipped beyond K
    assert float(s(500)) == pytest.approx(1 - 0.004 * 0.5, abs=1e-7)
    k = np.arange(0, 1001, 37)
    ref = 1 - (1 - 0.996) * (np.cos(np.pi * k / 1000) + 1) / 2
    np.testing.assert_allclose(np.asarray(jax.vmap(s)(jnp.asarray(k))), ref, atol=1e-7)


def paper_n(k, s0, s1, K):
    return math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1


@pytest.mark.parametrize("s0,s1,K", [(2, 150, 800_000), (2, 150, 1000), (10, 1280, 400_000)])
def test_consistency_steps_against_paper_formula(s0, s1, K):
    s = jax.jit(schedules.consistency_steps(s0, s1, K))
    assert int(s(0)) == s0 and int(s(K)) == s1 + 1
    ks = np.linspace(0, K, 41).astype(int)
    got = np.asarray(jax.vmap(s)(jnp.asarray(ks)))
    ref = np.array([paper_n(k, s0, s1, K) for k in ks])
    # float32 inside jit can move a value sitting exactly on an integer boundary by one
    assert np.mean(got == ref) >= 0.95 and np.all(np.abs(got - ref) <= 1)
    assert np.all(np.diff(got) >= 0)


def test_consistency_ema_follows_paper_not_n_minus_one():
    mu = schedules.consistency_ema(0.9, 2, 150, 800_000)
    assert float(mu(0)) == pytest.approx(0.9)  # N(0) = 2: exp(2 ln 0.9 / 2)
    for k in [0, 1000, 400_000, 800_000]:
        n = paper_n(k, 2, 150, 800_000)
        assert float(mu(k)) == pytest.approx(math.exp(2 * math.log(0.9) / n), rel=1e-5)
    assert float(schedules.consistency_ema(0.0, 2, 150, 100)(50)) == 0.0


def test_ict_steps_curriculum():
    K = 400_000
    s = schedules.ict_steps(10, 1280, K)
    stage = math.floor(K / (math.log2(math.floor(1280 / 10)) + 1))
    assert stage == 50_000
    for k in [0, 1, 49_999, 50_000, 100_000, 349_999, 350_000, 399_999, 400_000, 10**7]:
        expected = min(10 * 2 ** math.floor(min(k, K) / stage), 1280) + 1
        assert int(s(k)) == expected, k
    assert int(s(0)) == 11 and int(s(K)) == 1281


def test_ema_with_consistency_schedule_in_jit():
    mu = schedules.consistency_ema(0.9, 2, 150, 100)
    tx = stabilizers.ema(mu)
    target, online = jnp.zeros(2), jnp.ones(2)
    new, _ = jax.jit(lambda o, t, s: stabilizers.update_target(tx, o, t, s))(
        online, target, tx.init(target)
    )
    np.testing.assert_allclose(new, [0.1, 0.1], rtol=1e-5)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: schedules.cosine_momentum(1.2, 10), r"base.*1.2"),
        (lambda: schedules.cosine_momentum(0.99, 0), r"total_steps.*0"),
        (lambda: schedules.consistency_steps(0, 150, 10), r"s0.*0"),
        (lambda: schedules.consistency_steps(10, 5, 10), r"s1.*>= s0"),
        (lambda: schedules.consistency_ema(1.5, 2, 150, 10), r"mu0.*1.5"),
        (lambda: schedules.ict_steps(10, 1280, -1), r"total_steps.*-1"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
