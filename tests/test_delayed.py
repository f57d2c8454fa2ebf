"""delayed: the inner transform on due calls only, its state untouched in between."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tree_testing import arrays, tree

import stabilizers


@pytest.mark.parametrize("every", [2, 3])
def test_delayed_adam_equals_adam_on_due_calls(every):
    params0 = tree(jax.random.key(10))
    grads = [tree(k) for k in jax.random.split(jax.random.key(11), 4 * every)]
    delayed = stabilizers.delayed(optax.adam(0.1), every)
    plain = optax.adam(0.1)
    pd, sd = params0, delayed.init(params0)
    pp, sp = params0, plain.init(params0)
    for call, g in enumerate(grads, start=1):
        u, sd = delayed.update(g, sd, pd)
        pd = optax.apply_updates(pd, u)
        if call % every == 0:
            u2, sp = plain.update(g, sp, pp)
            pp = optax.apply_updates(pp, u2)
            chex.assert_trees_all_close(pd, pp, atol=1e-7)
        else:
            chex.assert_trees_all_equal(u, jax.tree.map(jnp.zeros_like, g))
    chex.assert_trees_all_close(sd.inner_state, sp, atol=1e-7)


def test_delayed_state_untouched_between_due_calls():
    tx = stabilizers.delayed(optax.adam(0.1), 3)
    p = jnp.ones(2)
    s0 = tx.init(p)
    _, s1 = tx.update(jnp.ones(2), s0, p)
    chex.assert_trees_all_equal(s1.inner_state, s0.inner_state)
    assert int(s1.count.value) == 1


def test_delayed_target_tracker_delays_the_target():
    tx = stabilizers.delayed(stabilizers.ema(0.5), 2)
    target, online = jnp.zeros(1), jnp.ones(1)
    state = tx.init(target)
    target, state = stabilizers.update_target(tx, online, target, state)
    np.testing.assert_array_equal(target, [0.0])
    target, state = stabilizers.update_target(tx, online, target, state)
    np.testing.assert_array_equal(target, [0.5])
    # the inner ema saw one update only
    assert int(state.inner_state.count.value) == 1


def test_delayed_passes_extra_args():
    def inner_update(updates, state, params=None, *, scale=1.0):
        return jax.tree.map(lambda u: scale * u, updates), state

    inner = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), inner_update)
    tx = stabilizers.delayed(inner, 1)
    u, _ = tx.update(jnp.ones(2), tx.init(jnp.ones(2)), None, scale=3.0)
    np.testing.assert_array_equal(u, [3.0, 3.0])


@given(st.lists(arrays, min_size=1, max_size=4), st.sampled_from(["sgd", "adam", "ema"]))
def test_property_delayed_one_is_inner(grads, kind):
    inner = {
        "sgd": optax.sgd(0.1, momentum=0.9),
        "adam": optax.adam(0.01),
        "ema": stabilizers.ema(0.7),
    }[kind]
    tx = stabilizers.delayed(inner, 1)
    shape = (len(grads[0]),)
    p = jnp.zeros(shape)
    s_d, s_i = tx.init(p), inner.init(p)
    for g in grads:
        g = jnp.resize(jnp.array(g), shape)
        u_d, s_d = tx.update(g, s_d, p)
        u_i, s_i = inner.update(g, s_i, p)
        np.testing.assert_array_equal(u_d, u_i)


@pytest.mark.parametrize("every", [1, 2, 3])
def test_is_due_tells_which_calls_run_the_inner_transform(every):
    tx = stabilizers.delayed(optax.sgd(1.0), every)
    params = jnp.zeros(1)
    state = tx.init(params)
    for call in range(1, 3 * every + 1):
        due = bool(tx.is_due(state))
        update, state = tx.update(jnp.ones(1), state, params)
        assert due == (call % every == 0)
        assert due == bool(update[0] != 0)


def test_is_due_stays_unbatched_under_vmap_with_seed_axes():
    tx = stabilizers.delayed(optax.adam(1e-3), 2)
    state = tx.init(jnp.zeros(3))
    axes = stabilizers.seed_axes(state)
    batched = jax.vmap(lambda _: tx.init(jnp.zeros(3)), out_axes=axes)(jnp.arange(4))
    due = jax.vmap(tx.is_due, in_axes=(axes,), out_axes=None)(batched)
    assert due.shape == () and not bool(due)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: stabilizers.delayed(optax.adam(1e-3), 0), r"every.*0"),
        (lambda: stabilizers.delayed(optax.adam(1e-3), 1.5), r"every.*1.5"),
        (lambda: stabilizers.delayed("adam", 2), r"inner.*adam"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
