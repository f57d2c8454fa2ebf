"""Energy distance: the V- and U-statistics against brute force and their expectations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generative import metrics as gmetrics


def _brute_force(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(V, U) from the full float64 distance matrices."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n, m = len(x), len(y)
    d_xy = np.linalg.norm(x[:, None] - y[None], axis=-1)
    d_xx = np.linalg.norm(x[:, None] - x[None], axis=-1)
    d_yy = np.linalg.norm(y[:, None] - y[None], axis=-1)
    v = 2 * d_xy.mean() - d_xx.mean() - d_yy.mean()
    u = 2 * d_xy.mean() - d_xx.sum() / (n * (n - 1)) - d_yy.sum() / (m * (m - 1))
    return v, u


@pytest.mark.parametrize("n, m, d", [(2, 3, 1), (7, 5, 2), (40, 33, 3), (300, 260, 2)])
def test_energy_statistics_match_brute_force(n, m, d):
    # 300 and 260 rows: more than one chunk of the row-wise map
    rng = np.random.default_rng(n + m + d)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (rng.normal(size=(m, d)) * 1.5 + 0.3).astype(np.float32)
    want_v, want_u = _brute_force(x, y)
    np.testing.assert_allclose(gmetrics.energy_distance(x, y), want_v, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gmetrics.energy_distance_u(x, y), want_u, rtol=1e-4, atol=1e-5)
    # V = U + A_x / n + A_y / m, A the within-sample means over i != j
    d_xx = np.linalg.norm(x[:, None] - x[None], axis=-1).sum() / (n * (n - 1))
    d_yy = np.linalg.norm(y[:, None] - y[None], axis=-1).sum() / (m * (m - 1))
    gap = gmetrics.energy_distance(x, y) - gmetrics.energy_distance_u(x, y)
    np.testing.assert_allclose(gap, d_xx / n + d_yy / m, rtol=1e-3, atol=1e-5)


def test_energy_u_of_a_set_with_itself_and_known_answer():
    x = jnp.array([[0.0, 0.0], [1.0, 0.0]])
    y = jnp.array([[0.0, 0.0], [0.0, 1.0]])
    # cross mean (0 + 1 + 1 + sqrt2) / 4; within means over i != j: 1 and 1
    want = 2 * (2 + math.sqrt(2)) / 4 - 1.0 - 1.0
    np.testing.assert_allclose(gmetrics.energy_distance_u(x, y), want, rtol=1e-5)
    # U(x, x) = 2 mean_{i,j} - mean_{i != j} * 2 = -2 A_x / n: negative, unlike V(x, x) = 0
    np.testing.assert_allclose(gmetrics.energy_distance_u(x, x), -1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="2 or more"):
        gmetrics.energy_distance_u(x[:1], y)


@pytest.mark.parametrize("n, m", [(40, 40), (30, 50)])
def test_u_is_unbiased_and_v_is_biased_by_the_within_sample_means(n, m):
    """Two independent samples of one 2-D standard normal, over many draws.

    |X - X'| is Rayleigh with scale sqrt(2), so E|X - X'| = sqrt(pi): E[U] = 0 and
    E[V] = sqrt(pi) (1 / n + 1 / m), 2 sqrt(pi) / n when n = m.
    """
    draws = 400

    def one(key):
        kx, ky = jax.random.split(key)
        x = jax.random.normal(kx, (n, 2))
        y = jax.random.normal(ky, (m, 2))
        return gmetrics.energy_distance(x, y), gmetrics.energy_distance_u(x, y)

    v, u = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(0), draws))
    v, u = np.asarray(v, np.float64), np.asarray(u, np.float64)
    se_u = u.std(ddof=1) / math.sqrt(draws)
    assert abs(u.mean()) < 3 * se_u, (u.mean(), se_u)
    bias = math.sqrt(math.pi) * (1 / n + 1 / m)
    se_v = v.std(ddof=1) / math.sqrt(draws)
    assert abs(v.mean() - bias) < 3 * se_v, (v.mean(), bias, se_v)
    # the floor is a bias, not noise: it is many standard errors away from 0
    assert v.mean() > 10 * se_v
