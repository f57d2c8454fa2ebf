"""The noise grid and what moves along training: N(k) levels, the target decay mu(k), the
draw of the level index n."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import stabilizers
from generative.consistency.config import CURRICULA, NOISE_SAMPLING, Config


def num_iterations(config: Config) -> int:
    """K, the number of training steps the schedules span."""
    return max(1, config.total_steps // config.batch_size)


def karras_sigma(i: jax.Array, n_scales: jax.Array, config: Config) -> jax.Array:
    r"""The i-th of N = `n_scales` ascending Karras noise levels.

    .. math::
      t_i = \left(\epsilon^{1/\rho} + \tfrac{i}{N-1}\left(T^{1/\rho} - \epsilon^{1/\rho}
      \right)\right)^\rho,

    exactly `sigma_min` at i = 0 and `sigma_max` at i = N - 1. `n_scales` may be traced.

    References:
      Karras et al., Elucidating the design space of diffusion-based generative models,
      2022, eq. 5; Song et al. 2023, app. C.
    """
    i = jnp.asarray(i, jnp.float32)
    n_scales = jnp.asarray(n_scales, jnp.float32)
    lo = config.sigma_min ** (1.0 / config.rho)
    hi = config.sigma_max ** (1.0 / config.rho)
    t = (lo + i / (n_scales - 1.0) * (hi - lo)) ** config.rho
    t = jnp.where(i <= 0, config.sigma_min, t)
    return jnp.where(i >= n_scales - 1, config.sigma_max, t)


def num_scales(count: jax.Array, config: Config) -> jax.Array:
    """N(k): `consistency_steps` (CT) or `ict_steps` (iCT) at step k = count."""
    k_total = num_iterations(config)
    if config.curriculum == "ct":
        return stabilizers.schedules.consistency_steps(config.s0, config.s1, k_total)(count)
    if config.curriculum == "ict":
        return stabilizers.schedules.ict_steps(config.s0, config.s1, k_total)(count)
    raise ValueError(f"curriculum must be one of {CURRICULA}; got {config.curriculum!r}")


def target_decay(config: Config):
    """mu(k) = exp(s0 ln mu0 / N(k)) as a schedule (`consistency_ema` for the CT curriculum;
    the same formula over iCT's N(k) otherwise)."""
    if config.curriculum == "ct":
        return stabilizers.schedules.consistency_ema(
            config.mu0, config.s0, config.s1, num_iterations(config)
        )

    def schedule(count):
        n_scales = num_scales(count, config).astype(jnp.float32)
        return jnp.exp(config.s0 * jnp.log(jnp.asarray(config.mu0, jnp.float32)) / n_scales)

    return schedule


def index_logits(n_scales: jax.Array, config: Config) -> jax.Array:
    r"""Log-probabilities of n in {0, ..., N - 2}, laid over the largest grid (masked).

    "uniform": U{0, ..., N-2} (the paper's n ~ U[1, N-1] in 1-based indexing). "lognormal":
    :math:`p(n) \propto \operatorname{erf}\frac{\ln t_{n+1} - P_m}{\sqrt2 P_s}
    - \operatorname{erf}\frac{\ln t_n - P_m}{\sqrt2 P_s}` (iCT, sec. 3.5). `n_scales` may be
    traced: the array has max(s0, s1) entries and those at n >= N - 1 are -inf.
    """
    idx = jnp.arange(max(config.s1, config.s0), dtype=jnp.float32)
    valid = idx < n_scales - 1
    if config.noise_sampling == "uniform":
        return jnp.where(valid, 0.0, -jnp.inf)
    if config.noise_sampling == "lognormal":
        lo = jnp.log(karras_sigma(idx, n_scales, config))
        hi = jnp.log(karras_sigma(idx + 1, n_scales, config))
        scale = np.sqrt(2.0) * config.p_std
        erf = jax.scipy.special.erf
        mass = erf((hi - config.p_mean) / scale) - erf((lo - config.p_mean) / scale)
        return jnp.where(valid, jnp.log(jnp.maximum(mass, 1e-30)), -jnp.inf)
    raise ValueError(
        f"noise_sampling must be one of {NOISE_SAMPLING}; got {config.noise_sampling!r}"
    )


def sample_index(key: jax.Array, n_scales: jax.Array, config: Config, shape=()) -> jax.Array:
    """Draws n in {0, ..., N - 2} (t_n = grid[n], t_{n+1} = grid[n + 1]); see `index_logits`."""
    if config.noise_sampling == "uniform":
        return jax.random.randint(key, shape, 0, n_scales - 1)
    # an inverse-CDF draw: one uniform number per example, whatever the grid's size
    probs = jax.nn.softmax(index_logits(n_scales, config))
    cdf = jnp.cumsum(probs)
    u = jax.random.uniform(key, shape) * cdf[-1]
    n = jnp.searchsorted(cdf, u, side="right")
    return jnp.minimum(n, n_scales - 2).astype(jnp.int32)
