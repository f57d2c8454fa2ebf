"""ema, periodic and update_target: exact math, properties, dtypes, combinators, errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from tree_testing import arrays, f64, manual_path, tree

import stabilizers
from stabilizers import schedules


@pytest.mark.parametrize("path", ["update_target", "manual"])
def test_ema_matches_hand_computation_over_steps(path):
    decay = 0.8
    tx = stabilizers.ema(decay)
    keys = jax.random.split(jax.random.key(0), 6)
    target = tree(keys[0])
    state = tx.init(target)
    ref = jax.tree.map(f64, target)
    for k in keys[1:]:
        online = tree(k)
        if path == "update_target":
            target, state = stabilizers.update_target(tx, online, target, state)
        else:
            target, state = manual_path(tx, online, target, state)
        ref = jax.tree.map(lambda t, o: decay * t + (1 - decay) * f64(o), ref, online)
        chex.assert_trees_all_close(jax.tree.map(f64, target), ref, rtol=1e-6, atol=1e-6)
    assert int(state.count.value) == 5


def test_ema_equals_optax_incremental_update():
    online, target = tree(jax.random.key(1)), tree(jax.random.key(2))
    tx = stabilizers.ema(0.995)
    new, _ = stabilizers.update_target(tx, online, target, tx.init(target))
    ref = optax.incremental_update(online, target, step_size=1 - 0.995)
    chex.assert_trees_all_close(new, ref, rtol=1e-6, atol=1e-7)


def test_ema_schedule_sees_count_from_zero():
    seen = []

    def schedule(count):
        seen.append(count)
        return jnp.where(count == 0, 0.0, 1.0)  # copy on the first update, then freeze

    tx = stabilizers.ema(schedule)
    target, online1, online2 = jnp.zeros(3), jnp.ones(3), 2 * jnp.ones(3)
    state = tx.init(target)
    target, state = stabilizers.update_target(tx, online1, target, state)
    np.testing.assert_array_equal(target, online1)
    target, state = stabilizers.update_target(tx, online2, target, state)
    np.testing.assert_array_equal(target, online1)
    assert [int(c) for c in seen] == [0, 1]


def test_ema_array_decay_traced_and_vmapped():
    online, target = tree(jax.random.key(3)), tree(jax.random.key(4))
    decays = jnp.array([0.0, 0.5, 0.9, 1.0])

    def one(d):
        tx = stabilizers.ema(d)
        return stabilizers.update_target(tx, online, target, tx.init(target))[0]

    batched = jax.jit(jax.vmap(one))(decays)
    for i, d in enumerate([0.0, 0.5, 0.9, 1.0]):
        single = one(d)
        row = jax.tree.map(lambda x, i=i: x[i], batched)
        chex.assert_trees_all_close(row, single, atol=1e-6)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("decay", [0.9, jnp.float32(0.9), schedules.cosine_momentum(0.9, 10)])
def test_ema_keeps_dtype(dtype, decay):
    tx = stabilizers.ema(decay)
    online, target = tree(jax.random.key(5), dtype), tree(jax.random.key(6), dtype)
    inc, _ = tx.update(jax.tree.map(lambda o, t: o - t, online, target), tx.init(target))
    chex.assert_trees_all_equal_dtypes(inc, target)
    new, _ = stabilizers.update_target(tx, online, target, tx.init(target))
    chex.assert_trees_all_equal_dtypes(new, target)
    ref = optax.incremental_update(jax.tree.map(f64, online), jax.tree.map(f64, target), 0.1)
    chex.assert_trees_all_close(jax.tree.map(f64, new), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("every", [1, 2, 3, 5])
def test_periodic_copies_exactly_on_due_calls(every):
    tx = stabilizers.periodic(every)
    keys = jax.random.split(jax.random.key(7), 13)
    target = tree(keys[0], scale=10.0)
    state = tx.init(target)
    for call, k in enumerate(keys[1:], start=1):
        online = tree(k, scale=0.01)  # very different magnitudes: rounding would show
        before = target
        target, state = stabilizers.update_target(tx, online, target, state)
        expected = online if call % every == 0 else before
        chex.assert_trees_all_equal(target, expected)


def test_periodic_manual_path_within_rounding():
    tx = stabilizers.periodic(2)
    online, target = tree(jax.random.key(8)), tree(jax.random.key(9))
    state = tx.init(target)
    t1, state = manual_path(tx, online, target, state)
    chex.assert_trees_all_equal(t1, target)
    t2, state = manual_path(tx, online, t1, state)
    chex.assert_trees_all_close(t2, online, atol=1e-6)


@given(arrays, arrays)
def test_property_decay_zero_copies(a, b):
    n = min(len(a), len(b))
    online, target = jnp.array(a[:n]), jnp.array(b[:n])
    tx = stabilizers.ema(0.0)
    new, _ = stabilizers.update_target(tx, online, target, tx.init(target))
    np.testing.assert_array_equal(new, online)


@given(arrays, arrays, st.sampled_from([1.0, jnp.float32(1.0)]))
@example([0.0], [1.401298464324817e-45], 1.0)  # subnormal gap, flushed to zero on CPU
def test_property_decay_one_freezes(a, b, one):
    n = min(len(a), len(b))
    online, target = jnp.array(a[:n]), jnp.array(b[:n])
    tx = stabilizers.ema(one)
    new, _ = stabilizers.update_target(tx, online, target, tx.init(target))
    np.testing.assert_array_equal(new, target)
    # optax's `target + 0` may flush a subnormal target to zero (XLA CPU runs with
    # flush-to-zero); update_target above keeps it, the plain path may not.
    new2, _ = manual_path(tx, online, target, tx.init(target))
    t, n2 = np.asarray(target), np.asarray(new2)
    flushed = (np.abs(t) < np.finfo(np.float32).tiny) & (n2 == 0)
    np.testing.assert_array_equal(np.where(flushed, t, n2), t)


@given(st.lists(arrays, min_size=1, max_size=4), arrays)
def test_property_periodic_one_copies_every_call(onlines, start):
    tx = stabilizers.periodic(1)
    target = jnp.array(start)
    state = tx.init(target)
    for o in onlines:
        o = jnp.resize(jnp.array(o), target.shape)
        target, state = stabilizers.update_target(tx, o, target, state)
        np.testing.assert_array_equal(target, o)


def test_masked_unstabilized_leaves_follow_online_exactly():
    online, target = tree(jax.random.key(14)), tree(jax.random.key(15))
    mask = {"w": True, "b": False, "nested": [False]}
    tx = optax.masked(stabilizers.ema(0.9), mask)
    new, _ = stabilizers.update_target(tx, online, target, tx.init(target))
    chex.assert_trees_all_equal(new["b"], online["b"])
    chex.assert_trees_all_equal(new["nested"], online["nested"])
    chex.assert_trees_all_close(new["w"], 0.9 * target["w"] + 0.1 * online["w"], atol=1e-6)


def test_multi_transform_set_to_zero_freezes():
    online, target = tree(jax.random.key(16)), tree(jax.random.key(17))
    labels = {"w": "soft", "b": "frozen", "nested": ["frozen"]}
    tx = optax.multi_transform(
        {"soft": stabilizers.ema(0.5), "frozen": optax.set_to_zero()}, labels
    )
    new, _ = stabilizers.update_target(tx, online, target, tx.init(target))
    chex.assert_trees_all_equal(new["b"], target["b"])
    chex.assert_trees_all_equal(new["nested"], target["nested"])
    chex.assert_trees_all_close(new["w"], 0.5 * (target["w"] + online["w"]), atol=1e-6)


def test_chain_of_two_emas_multiplies_step_sizes():
    tx = optax.chain(stabilizers.ema(0.5), stabilizers.ema(0.5))
    new, _ = stabilizers.update_target(tx, jnp.ones(2), jnp.zeros(2), tx.init(jnp.zeros(2)))
    np.testing.assert_allclose(new, [0.25, 0.25])


def test_inject_hyperparams_constant_and_schedule():
    online, target = tree(jax.random.key(18)), tree(jax.random.key(19))
    tx = optax.inject_hyperparams(stabilizers.ema)(decay=0.9)
    ref_tx = stabilizers.ema(0.9)
    new, state = stabilizers.update_target(tx, online, target, tx.init(target))
    ref, _ = stabilizers.update_target(ref_tx, online, target, ref_tx.init(target))
    chex.assert_trees_all_close(new, ref, atol=1e-6)
    assert float(state.hyperparams["decay"]) == pytest.approx(0.9)
    # a traced hyperparameter can be changed between steps
    state.hyperparams["decay"] = jnp.asarray(0.0)
    new2, _ = stabilizers.update_target(tx, online, new, state)
    chex.assert_trees_all_close(new2, online, atol=1e-6)
    sched = schedules.cosine_momentum(0.5, 4)
    tx_s = optax.inject_hyperparams(stabilizers.ema)(decay=sched)
    _, st_s = stabilizers.update_target(tx_s, online, target, tx_s.init(target))
    assert float(st_s.hyperparams["decay"]) == pytest.approx(0.5)


def test_inject_hyperparams_periodic_every():
    tx = optax.inject_hyperparams(stabilizers.periodic)(every=2)
    t, s = jnp.zeros(2), None
    s = tx.init(t)
    t, s = stabilizers.update_target(tx, jnp.ones(2), t, s)
    np.testing.assert_array_equal(t, [0, 0])
    t, s = stabilizers.update_target(tx, jnp.ones(2), t, s)
    np.testing.assert_array_equal(t, [1, 1])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: stabilizers.ema(-0.1), r"decay.*\[0, 1\].*-0.1"),
        (lambda: stabilizers.ema(1.5), r"decay.*1.5"),
        (lambda: stabilizers.ema(float("nan")), r"decay.*nan"),
        (lambda: stabilizers.ema(jnp.array(2.0)), r"decay.*2.0"),
        (lambda: stabilizers.ema(jnp.array([0.9, 0.99])), r"decay.*scalar"),
        (lambda: stabilizers.ema("0.9"), r"decay.*schedule.*'0.9'"),
        (lambda: stabilizers.ema([0.9]), r"decay.*\[0.9\]"),
        (lambda: stabilizers.ema(None), r"decay.*None"),
        (lambda: stabilizers.periodic(0), r"every.*>= 1.*0"),
        (lambda: stabilizers.periodic(-3), r"every.*-3"),
        (lambda: stabilizers.periodic(2.5), r"every.*integer.*2.5"),
        (lambda: stabilizers.periodic(True), r"every.*True"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("decay", [0.9, jnp.float32(0.99), schedules.cosine_momentum(0.5, 6)])
def test_ema_on_deltas_is_scale_by_schedule_of_one_minus_decay(decay):
    mu = decay if callable(decay) else (lambda k: decay)
    ours, theirs = stabilizers.ema(decay), optax.scale_by_schedule(lambda k: 1 - mu(k))
    s_ours, s_theirs = ours.init(None), theirs.init(None)
    for k in range(6):
        delta = tree(jax.random.key(30 + k))
        u_ours, s_ours = ours.update(delta, s_ours)
        u_theirs, s_theirs = theirs.update(delta, s_theirs)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=1e-6)


@pytest.mark.parametrize("every,decay", [(1, 0.9), (3, 0.5), (4, 0.0), (2, jnp.float32(0.25))])
def test_periodic_with_decay_takes_an_ema_step_on_due_calls_only(every, decay):
    online, target = tree(jax.random.key(40)), tree(jax.random.key(41))
    tx = stabilizers.periodic(every, decay)
    state = tx.init(target)
    expected, d = target, float(decay)
    for call in range(1, 3 * every + 1):
        target, state = stabilizers.update_target(tx, online, target, state)
        if call % every == 0:
            expected = jax.tree.map(lambda t, o: d * t + (1 - d) * o, expected, online)
        chex.assert_trees_all_close(target, expected, atol=1e-6)


def test_periodic_every_one_is_ema_and_decay_zero_is_the_old_hard_copy():
    online, target = tree(jax.random.key(42)), tree(jax.random.key(43))
    for a, b in [(stabilizers.periodic(1, 0.9), stabilizers.ema(0.9))]:
        ua, _ = a.update(online, a.init(target))
        ub, _ = b.update(online, b.init(target))
        chex.assert_trees_all_equal(ua, ub)
    tx = stabilizers.periodic(2)
    state = tx.update(online, tx.init(target))[1]
    copied, _ = stabilizers.update_target(tx, online, target, state)
    chex.assert_trees_all_equal(copied, online)


def test_periodic_sweeps_period_and_decay_in_one_vmapped_program():
    # hard copies every 1, 2, 4 and EMAs of decay 0.5 side by side, traced
    every = jnp.array([1, 2, 4, 1])
    decay = jnp.array([0.0, 0.0, 0.0, 0.5])

    def run(n, d):
        tx = stabilizers.periodic(n, d)
        target, state = jnp.zeros(()), tx.init(jnp.zeros(()))
        values = []
        for k in range(1, 5):
            target, state = stabilizers.update_target(tx, jnp.float32(k), target, state)
            values.append(target)
        return jnp.stack(values)

    out = jax.jit(jax.vmap(run))(every, decay)
    np.testing.assert_allclose(
        out,
        [[1, 2, 3, 4], [0, 2, 2, 4], [0, 0, 0, 4], [0.5, 1.25, 2.125, 3.0625]],
    )


@pytest.mark.parametrize(
    "every,decay,age",
    [(1, 0.0, 0.0), (9, 0.0, 4.0), (1, 0.8, 4.0), (1, 0.99, 99.0), (4, 0.5, 5.5)],
)
def test_mean_age_matches_the_average_age_of_the_targets_weights(every, decay, age):
    assert float(stabilizers.mean_age(every, decay)) == pytest.approx(age, rel=1e-5)
    # simulated: online params theta_k = k (so a target's value is k minus its age)
    tx = stabilizers.periodic(every, decay)

    def body(carry, k):
        target, state = stabilizers.update_target(tx, k, *carry)
        return (target, state), k - target

    steps = jnp.arange(1, 4001, dtype=jnp.float32)
    _, ages = jax.lax.scan(body, (jnp.zeros(()), tx.init(jnp.zeros(()))), steps)
    assert np.mean(np.asarray(ages)[2000:]) == pytest.approx(age, rel=1e-2, abs=1e-3)


def test_matched_ages_and_inverse():
    n = jnp.arange(1, 50)
    d = stabilizers.ema_decay_for_age((n - 1) / 2)
    np.testing.assert_allclose(d, (n - 1) / (n + 1), rtol=1e-6)
    np.testing.assert_allclose(stabilizers.mean_age(decay=d), (n - 1) / 2, rtol=1e-5, atol=1e-6)
    assert float(stabilizers.mean_age(decay=1.0)) == math.inf
