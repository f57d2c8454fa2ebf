"""Diagnostics that every study logs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def _sum_squares(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return sum(
        (jnp.sum(jnp.square(x.astype(jnp.promote_types(x.dtype, jnp.float32)))) for x in leaves),
        start=jnp.zeros([], jnp.float32),
    )


def lag(online: Any, target: Any) -> jax.Array:
    r"""How far the target trails the online params, relative to their size.

    .. math::
      \operatorname{lag}(\theta, \bar\theta) = \frac{\lVert\theta - \bar\theta\rVert_2}
      {\lVert\theta\rVert_2},

    with the norms taken over the whole pytree (all leaves flattened into one vector), in
    at least float32. 0 when the target equals the online params; about 1 when it is as
    far from them as they are from zero. When the online params are all zero the result is
    0 if the target is zero too and `inf` otherwise.

    Args:
      online: the online params.
      target: the target params, with the same structure.

    Returns:
      A float32 scalar.

    Example:
      >>> import jax.numpy as jnp, stabilizers
      >>> stabilizers.lag({"w": jnp.array([3.0, 4.0])}, {"w": jnp.array([3.0, 3.0])})
      Array(0.2, dtype=float32)
    """
    diff = jax.tree.map(lambda o, t: o - t, online, target)
    num = jnp.sqrt(_sum_squares(diff))
    den = jnp.sqrt(_sum_squares(online))
    safe = jnp.where(den > 0, den, 1.0)
    return jnp.where(den > 0, num / safe, jnp.where(num > 0, jnp.inf, 0.0))
