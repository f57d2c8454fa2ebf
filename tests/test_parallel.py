"""SharedCount and seed_axes: shared periods stay real branches under vmap."""

import chex
import jax
import jax.numpy as jnp
import optax

import stabilizers


def _vmapped_update(tx, with_axes):
    online = jnp.ones((32, 64))
    target = jnp.zeros((32, 64))
    state = jax.vmap(tx.init)(target) if not with_axes else None
    if with_axes:
        axes = stabilizers.seed_axes(jax.eval_shape(tx.init, target[0]))
        state = jax.vmap(tx.init, out_axes=axes)(target)
    else:
        axes = 0
    f = jax.vmap(lambda o, t, s: tx.update(o - t, s, t), in_axes=(0, 0, axes), out_axes=(0, axes))
    return f, (online, target, state)


def test_shared_counter_keeps_cond_under_vmap():
    tx = stabilizers.delayed(optax.adam(1e-3), 2)
    f, args = _vmapped_update(tx, with_axes=True)
    jaxpr = str(jax.make_jaxpr(f)(*args))
    assert "cond[" in jaxpr, "shared counter should keep a real branch"
    g, args2 = _vmapped_update(tx, with_axes=False)
    jaxpr2 = str(jax.make_jaxpr(g)(*args2))
    assert "cond[" not in jaxpr2 and "select_n" in jaxpr2, "batched counter becomes a select"
    # same numbers either way
    out_shared, out_batched = jax.jit(f)(*args), jax.jit(g)(*args2)
    chex.assert_trees_all_close(out_shared[0], out_batched[0])


def test_seed_axes_marks_only_shared_counts():
    state = stabilizers.delayed(optax.adam(1e-3), 2).init(jnp.zeros(3))
    axes = stabilizers.seed_axes(state)
    assert axes.count is None
    assert all(a == 0 for a in jax.tree.leaves(axes.inner_state))
