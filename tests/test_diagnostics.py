"""lag: the relative distance of a target from the online params."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tree_testing import tree

import stabilizers


def test_lag_values():
    assert float(
        stabilizers.lag({"a": jnp.array([3.0, 4.0])}, {"a": jnp.array([3.0, 3.0])})
    ) == pytest.approx(0.2)
    on, tg = tree(jax.random.key(20)), tree(jax.random.key(21))
    flat_o = np.concatenate([np.ravel(x) for x in jax.tree.leaves(on)])
    flat_t = np.concatenate([np.ravel(x) for x in jax.tree.leaves(tg)])
    ref = np.linalg.norm(flat_o - flat_t) / np.linalg.norm(flat_o)
    assert float(stabilizers.lag(on, tg)) == pytest.approx(ref, rel=1e-5)
    assert float(stabilizers.lag(on, on)) == 0.0
    assert float(stabilizers.lag(jnp.zeros(2), jnp.zeros(2))) == 0.0
    assert float(stabilizers.lag(jnp.zeros(2), jnp.ones(2))) == math.inf
    assert (
        stabilizers.lag(jnp.ones(2, jnp.bfloat16), jnp.zeros(2, jnp.bfloat16)).dtype == jnp.float32
    )
