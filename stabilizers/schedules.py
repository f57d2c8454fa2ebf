"""Schedules for target decays and for the discretisation that drives them.

Every schedule is a pure function of the update count `k` (an int or int array, starting
at 0) that jit and vmap can trace, like `optax.schedules`. Decay schedules plug straight
into `stabilizers.ema(decay=...)`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from stabilizers import checks


def _k(count: jax.Array, total_steps: int) -> jax.Array:
    return jnp.clip(jnp.asarray(count), 0, total_steps).astype(jnp.float32)


def cosine_momentum(base: float, total_steps: int) -> optax.Schedule:
    r"""BYOL's target decay, rising from `base` to 1 along a half cosine.

    .. math::
      \tau_k = 1 - (1 - \tau_\text{base})\,\frac{\cos(\pi k / K) + 1}{2},

    so :math:`\tau_0 = \tau_\text{base}` and :math:`\tau_K = 1`; k is clipped to [0, K].
    MoCo v3 uses the same schedule from 0.99.

    Args:
      base: the decay at k = 0, in [0, 1] (BYOL: 0.996).
      total_steps: K, the number of training steps, an integer >= 1.

    Returns:
      A schedule `count -> decay` (float32).

    Example:
      >>> import stabilizers
      >>> tx = stabilizers.ema(stabilizers.schedules.cosine_momentum(0.996, 10_000))

    References:
      Grill et al., Bootstrap your own latent, NeurIPS 2020, section 3.2.
    """
    base = checks.unit_interval("base", base)
    total_steps = checks.positive_int("total_steps", total_steps)

    def schedule(count):
        k = _k(count, total_steps)
        return 1.0 - (1.0 - base) * (jnp.cos(jnp.pi * k / total_steps) + 1.0) / 2.0

    return schedule


def consistency_steps(s0: int, s1: int, total_steps: int) -> optax.Schedule:
    r"""Consistency Training's number of discretisation steps N(k).

    .. math::
      N(k) = \left\lceil \sqrt{\tfrac{k}{K}\left((s_1 + 1)^2 - s_0^2\right) + s_0^2}
      - 1 \right\rceil + 1,

    rising from :math:`N(0) = s_0` to :math:`N(K) = s_1 + 1`. Computed in float32, as
    inside a jitted training step.

    Args:
      s0: initial number of steps (the paper: 2).
      s1: final number of steps (the paper: 150 on CIFAR-10).
      total_steps: K, an integer >= 1; k is clipped to [0, K].

    Returns:
      A schedule `count -> N(k)` (int32).

    References:
      Song, Dhariwal, Chen & Sutskever, Consistency Models, ICML 2023, appendix C.
    """
    s0 = checks.positive_int("s0", s0)
    s1 = checks.positive_int("s1", s1)
    total_steps = checks.positive_int("total_steps", total_steps)
    if s1 < s0:
        raise ValueError(f"s1 must be >= s0; got s0={s0!r}, s1={s1!r}")

    def schedule(count):
        k = _k(count, total_steps)
        inner = k / total_steps * ((s1 + 1) ** 2 - s0**2) + s0**2
        return (jnp.ceil(jnp.sqrt(inner) - 1.0) + 1.0).astype(jnp.int32)

    return schedule


def consistency_ema(mu0: float, s0: int, s1: int, total_steps: int) -> optax.Schedule:
    r"""Consistency Training's target decay :math:`\mu(k) = \exp(s_0 \log\mu_0 / N(k))`.

    N(k) is `consistency_steps(s0, s1, total_steps)`. The decay starts at
    :math:`\mu_0` when :math:`N(0) = s_0` and rises toward 1 as the discretisation gets
    finer, so that the target keeps pace with a shrinking step between noise levels.
    `mu0 = 0` gives decay 0 at every step: the target is the online params behind a
    stop-gradient (improved Consistency Training's choice).

    This follows the paper's formula. Dividing by `N(k) - 1` instead, as some
    implementations do, gives :math:`\mu_0^{s_0/(s_0-1)}` at k = 0 (0.81 for
    :math:`\mu_0 = 0.9, s_0 = 2`) instead of :math:`\mu_0`.

    Args:
      mu0: the decay at k = 0, in [0, 1] (the paper: 0.9 on CIFAR-10, 0.95 on LSUN); a
        float or a scalar array, traced values included (a vmapped sweep over mu0).
      s0: initial number of steps.
      s1: final number of steps.
      total_steps: K.

    Returns:
      A schedule `count -> mu(k)` (float32).

    Example:
      >>> import stabilizers
      >>> mu = stabilizers.schedules.consistency_ema(0.9, s0=2, s1=150, total_steps=800_000)
      >>> tx = stabilizers.ema(decay=mu)

    References:
      Song, Dhariwal, Chen & Sutskever, Consistency Models, ICML 2023, appendix C.
    """
    mu0 = checks.unit_interval("mu0", mu0)
    n_of_k = consistency_steps(s0, s1, total_steps)

    def schedule(count):
        # jnp.log, not math.log: mu0 may be traced (a vmapped sweep over mu0); log 0 = -inf
        # gives decay exp(-inf) = 0.
        log_mu0 = jnp.log(jnp.asarray(mu0, jnp.float32))
        n = n_of_k(count).astype(jnp.float32)
        return jnp.exp(s0 * log_mu0 / n)

    return schedule


def ict_steps(s0: int = 10, s1: int = 1280, total_steps: int = 400_000) -> optax.Schedule:
    r"""Improved Consistency Training's exponential curriculum for N(k).

    .. math::
      N(k) = \min\left(s_0\, 2^{\lfloor k / K' \rfloor},\ s_1\right) + 1, \qquad
      K' = \left\lfloor \frac{K}{\log_2 \lfloor s_1 / s_0 \rfloor + 1} \right\rfloor,

    doubling the number of steps in equal stages from :math:`s_0 + 1` to :math:`s_1 + 1`.

    Args:
      s0: initial number of steps (10).
      s1: final number of steps (1280).
      total_steps: K, the number of training steps; k is clipped to [0, K].

    Returns:
      A schedule `count -> N(k)` (int32).

    References:
      Song & Dhariwal, Improved techniques for training consistency models, ICLR 2024,
      section 3.4.
    """
    s0 = checks.positive_int("s0", s0)
    s1 = checks.positive_int("s1", s1)
    total_steps = checks.positive_int("total_steps", total_steps)
    if s1 < s0:
        raise ValueError(f"s1 must be >= s0; got s0={s0!r}, s1={s1!r}")
    stage = max(1, math.floor(total_steps / (math.log2(math.floor(s1 / s0)) + 1)))

    def schedule(count):
        k = jnp.clip(jnp.asarray(count), 0, total_steps).astype(jnp.int32)
        doublings = jnp.minimum(k // stage, 30)  # 2**30 * s0 is far past any s1
        n = jnp.minimum(s0 * jnp.power(2.0, doublings.astype(jnp.float32)), float(s1))
        return n.astype(jnp.int32) + 1

    return schedule
