"""The consistency-training loss: the distance d, the weight lambda, one example, a batch."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from generative.consistency.config import DISTANCES, WEIGHTINGS, Config
from generative.consistency.model import consistency_fn


def distance(f_t: jax.Array, f_s: jax.Array, config: Config) -> jax.Array:
    r"""d(f_online, f_target) for one example, over the whole example vector.

    - "l2": mean of squares (the authors' code);
    - "l1": mean of absolute values;
    - "pseudo_huber": :math:`\sqrt{\lVert a - b\rVert_2^2 + c^2} - c` with the squared norm a
      sum (not a mean) over all d dimensions, channels included, and
      :math:`c = 0.00054 \sqrt d` (Song & Dhariwal 2023, sec. 3.3).
    """
    diff = (f_t - f_s).reshape(-1)
    if config.distance == "l2":
        return jnp.mean(jnp.square(diff))
    if config.distance == "l1":
        return jnp.mean(jnp.abs(diff))
    if config.distance == "pseudo_huber":
        c = config.huber_c * np.sqrt(diff.size)
        return jnp.sqrt(jnp.sum(jnp.square(diff)) + c**2) - c
    raise ValueError(f"distance must be one of {DISTANCES}; got {config.distance!r}")


def weight(t_n: jax.Array, t_np1: jax.Array, config: Config) -> jax.Array:
    """lambda: 1 (CT) or 1 / (t_{n+1} - t_n) (iCT, sec. 3.5)."""
    if config.weighting == "uniform":
        return jnp.ones_like(t_n)
    if config.weighting == "ict":
        return 1.0 / (t_np1 - t_n)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}; got {config.weighting!r}")


def consistency_loss(
    params: Any,
    target: Any,
    x: jax.Array,
    z: jax.Array,
    t_n: jax.Array,
    t_np1: jax.Array,
    dropout_key: jax.Array | None,
    config: Config,
) -> jax.Array:
    r"""The CT loss for one example x, one noise draw z and one pair of adjacent levels.

    .. math::
      \lambda(t_n)\, d\left(f_\theta(x + t_{n+1} z, t_{n+1}),\
      f_{\theta^-}(x + t_n z, t_n)\right),

    with the same z and the same dropout key in both branches and a stop-gradient on the
    target branch (no gradient reaches `target`).

    Args:
      params: online params theta.
      target: target params theta^-.
      x: a clean example.
      z: standard normal noise of x's shape.
      t_n: the lower noise level (target branch).
      t_np1: the higher noise level (online branch).
      dropout_key: one dropout key shared by both branches (None: no dropout).
      config: the config.

    References:
      Song et al., Consistency Models, 2023, Algorithm 3; Song & Dhariwal 2023, eq. 8.
    """
    if jnp.ndim(t_n) or jnp.ndim(t_np1):
        raise ValueError("consistency_loss is for one example: t_n and t_np1 must be scalars")
    f_online = consistency_fn(params, x + t_np1 * z, t_np1, config, dropout_key)
    f_target = consistency_fn(jax.lax.stop_gradient(target), x + t_n * z, t_n, config, dropout_key)
    f_target = jax.lax.stop_gradient(f_target)
    return weight(t_n, t_np1, config) * distance(f_online, f_target, config)


def batch_loss(params, target, x, z, t_n, t_np1, dropout_keys, config: Config) -> jax.Array:
    """The batch mean of `consistency_loss` (vmapped over examples).

    `dropout_keys` holds one key per example (each shared by its two branches), or is None
    (no dropout).
    """
    key_axis = None if dropout_keys is None else 0
    losses = jax.vmap(consistency_loss, in_axes=(None, None, 0, 0, 0, 0, key_axis, None))(
        params, target, x, z, t_n, t_np1, dropout_keys, config
    )
    return jnp.mean(losses)
