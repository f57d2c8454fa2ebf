"""Helpers of the library tests: a small pytree, the plain optax path, value strategies."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import strategies as st

arrays = st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=6)


def tree(key, dtype=jnp.float32, scale=1.0):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w": (scale * jax.random.normal(k1, (3, 4))).astype(dtype),
        "b": (scale * jax.random.normal(k2, (4,))).astype(dtype),
        "nested": [(scale * jax.random.normal(k3, ())).astype(dtype)],
    }


def manual_path(tx, online, target, state):
    """The documented optax path: delta in, increments out, apply_updates."""
    delta = jax.tree.map(lambda o, t: o - t, online, target)
    inc, state = tx.update(delta, state, target)
    return optax.apply_updates(target, inc), state


def f64(x):
    return np.asarray(x, dtype=np.float64)
