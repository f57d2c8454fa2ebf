"""The stabilizers library: exact math, properties, jit/vmap, dtypes, combinators, errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import stabilizers
from stabilizers import schedules


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


# ----------------------------------------------------------------------------- public API


def test_public_api_names():
    for name in [
        "ema",
        "periodic",
        "delayed",
        "update_target",
        "lag",
        "schedules",
        "SharedCount",
        "seed_axes",
        "EmaState",
        "PeriodicState",
        "DelayedState",
        "checks",
    ]:
        assert hasattr(stabilizers, name), name
        assert name in stabilizers.__all__
    for name in ["cosine_momentum", "consistency_steps", "consistency_ema", "ict_steps"]:
        assert callable(getattr(stabilizers.schedules, name))
    for name in stabilizers.__all__:
        getattr(stabilizers, name)


def test_library_imports_without_flax_or_gymnax():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('flax', 'gymnax', 'orbax', 'tyro', 'matplotlib'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import stabilizers, jax.numpy as jnp\n"
        "tx = stabilizers.ema(0.5); s = tx.init(jnp.zeros(2))\n"
        "print(stabilizers.update_target(tx, jnp.ones(2), jnp.zeros(2), s)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "0.5" in out.stdout


# ----------------------------------------------------------------------------- ema


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


# ----------------------------------------------------------------------------- periodic


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


# ----------------------------------------------------------------------------- delayed


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


# ----------------------------------------------------------------------------- properties

arrays = st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=6)


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


# ----------------------------------------------------------------------------- jit / vmap


@pytest.mark.parametrize(
    "make",
    [
        lambda: stabilizers.ema(0.9),
        lambda: stabilizers.periodic(3),
        lambda: stabilizers.delayed(optax.adam(1e-2), 2),
    ],
    ids=["ema", "periodic", "delayed"],
)
def test_jit_matches_eager_and_compiles_once(make):
    tx = make()
    online, target = tree(jax.random.key(12)), tree(jax.random.key(13))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def jitted(online, target, state):
        return stabilizers.update_target(tx, online, target, state)

    chex.clear_trace_counter()
    s_j = s_e = tx.init(target)
    t_j = t_e = target
    for _ in range(4):
        t_j, s_j = jitted(online, t_j, s_j)
        t_e, s_e = stabilizers.update_target(tx, online, t_e, s_e)
        chex.assert_trees_all_close(t_j, t_e, atol=1e-6)


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


# ----------------------------------------------------------------------------- combinators


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


# ----------------------------------------------------------------------------- schedules


def test_cosine_momentum_endpoints_and_midpoint():
    s = schedules.cosine_momentum(0.996, 1000)
    assert float(s(0)) == pytest.approx(0.996)
    assert float(s(1000)) == pytest.approx(1.0)
    assert float(s(5000)) == pytest.approx(1.0)  # clipped beyond K
    assert float(s(500)) == pytest.approx(1 - 0.004 * 0.5, abs=1e-7)
    k = np.arange(0, 1001, 37)
    ref = 1 - (1 - 0.996) * (np.cos(np.pi * k / 1000) + 1) / 2
    np.testing.assert_allclose(np.asarray(jax.vmap(s)(jnp.asarray(k))), ref, atol=1e-7)


def paper_n(k, s0, s1, K):
    return math.ceil(math.sqrt(k / K * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1


@pytest.mark.parametrize("s0,s1,K", [(2, 150, 800_000), (2, 150, 1000), (10, 1280, 400_000)])
def test_consistency_steps_against_paper_formula(s0, s1, K):
    s = jax.jit(schedules.consistency_steps(s0, s1, K))
    assert int(s(0)) == s0 and int(s(K)) == s1 + 1
    ks = np.linspace(0, K, 41).astype(int)
    got = np.asarray(jax.vmap(s)(jnp.asarray(ks)))
    ref = np.array([paper_n(k, s0, s1, K) for k in ks])
    # float32 inside jit can move a value sitting exactly on an integer boundary by one
    assert np.mean(got == ref) >= 0.95 and np.all(np.abs(got - ref) <= 1)
    assert np.all(np.diff(got) >= 0)


def test_consistency_ema_follows_paper_not_n_minus_one():
    mu = schedules.consistency_ema(0.9, 2, 150, 800_000)
    assert float(mu(0)) == pytest.approx(0.9)  # N(0) = 2: exp(2 ln 0.9 / 2)
    for k in [0, 1000, 400_000, 800_000]:
        n = paper_n(k, 2, 150, 800_000)
        assert float(mu(k)) == pytest.approx(math.exp(2 * math.log(0.9) / n), rel=1e-5)
    assert float(schedules.consistency_ema(0.0, 2, 150, 100)(50)) == 0.0


def test_ict_steps_curriculum():
    K = 400_000
    s = schedules.ict_steps(10, 1280, K)
    stage = math.floor(K / (math.log2(math.floor(1280 / 10)) + 1))
    assert stage == 50_000
    for k in [0, 1, 49_999, 50_000, 100_000, 349_999, 350_000, 399_999, 400_000, 10**7]:
        expected = min(10 * 2 ** math.floor(min(k, K) / stage), 1280) + 1
        assert int(s(k)) == expected, k
    assert int(s(0)) == 11 and int(s(K)) == 1281


def test_ema_with_consistency_schedule_in_jit():
    mu = schedules.consistency_ema(0.9, 2, 150, 100)
    tx = stabilizers.ema(mu)
    target, online = jnp.zeros(2), jnp.ones(2)
    new, _ = jax.jit(lambda o, t, s: stabilizers.update_target(tx, o, t, s))(
        online, target, tx.init(target)
    )
    np.testing.assert_allclose(new, [0.1, 0.1], rtol=1e-5)


# ----------------------------------------------------------------------------- lag


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


# ----------------------------------------------------------------------------- errors


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
        (lambda: stabilizers.delayed(optax.adam(1e-3), 0), r"every.*0"),
        (lambda: stabilizers.delayed(optax.adam(1e-3), 1.5), r"every.*1.5"),
        (lambda: stabilizers.delayed("adam", 2), r"inner.*adam"),
        (lambda: schedules.cosine_momentum(1.2, 10), r"base.*1.2"),
        (lambda: schedules.cosine_momentum(0.99, 0), r"total_steps.*0"),
        (lambda: schedules.consistency_steps(0, 150, 10), r"s0.*0"),
        (lambda: schedules.consistency_steps(10, 5, 10), r"s1.*>= s0"),
        (lambda: schedules.consistency_ema(1.5, 2, 150, 10), r"mu0.*1.5"),
        (lambda: schedules.ict_steps(10, 1280, -1), r"total_steps.*-1"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
