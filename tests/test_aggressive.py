"""stabilizers.until_converged and stabilizers.switch_off: exact stopping points, vmap, errors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stabilizers


def scripted(losses):
    """A step whose k-th call returns losses[k] and counts its calls in the carry."""
    table = jnp.asarray(losses, jnp.float32)

    def step(carry):
        k, x = carry
        return (k + 1, x + 1.0), table[jnp.minimum(k, table.shape[0] - 1)]

    return step, (jnp.int32(0), jnp.float32(0.0))


def reference_steps(losses, max_steps, window, tolerance=0.0):
    """The authors' loop, in plain Python."""
    prev, total = math.inf, 0.0
    for k in range(1, max_steps + 1):
        total += losses[min(k - 1, len(losses) - 1)]
        if k % window == 0:
            mean = total / window
            if prev - mean < tolerance:
                return k, True
            prev, total = mean, 0.0
    return max_steps, False


def test_stops_at_first_window_that_does_not_improve():
    # windows of 15: means 10, 9, 9.5 -> stop after the third window (45 steps)
    losses = [10.0] * 15 + [9.0] * 15 + [9.5] * 15 + [1.0] * 100
    step, carry = scripted(losses)
    (k, x), info = stabilizers.until_converged(step, carry, max_steps=100, window=15)
    assert int(info.steps) == 45 and int(k) == 45 and float(x) == 45.0
    assert bool(info.converged)
    np.testing.assert_allclose(float(info.window_loss), 9.5, rtol=1e-6)
    assert reference_steps(losses, 100, 15) == (45, True)


def test_stops_at_its_bound_when_the_loss_keeps_falling():
    losses = list(np.linspace(10.0, 1.0, 200))
    step, carry = scripted(losses)
    (k, _), info = stabilizers.until_converged(step, carry, max_steps=99, window=15)
    assert int(info.steps) == 99 and int(k) == 99
    assert not bool(info.converged)
    # last complete window: steps 76..90
    np.testing.assert_allclose(float(info.window_loss), np.mean(losses[75:90]), rtol=1e-5)


def test_runs_at_least_one_window_and_equal_windows_continue():
    # constant loss: the first window is compared with +inf (passes); the second window
    # equals the first, which is not a decrease of the improvement below 0 -> continues
    step, carry = scripted([3.0] * 200)
    _, info = stabilizers.until_converged(step, carry, max_steps=60, window=15)
    assert int(info.steps) == 60 and not bool(info.converged)
    _, info = stabilizers.until_converged(step, carry, max_steps=60, window=15, tolerance=1e-3)
    assert int(info.steps) == 30 and bool(info.converged)


def test_matches_the_reference_loop_on_random_losses():
    rng = np.random.default_rng(0)
    for _ in range(6):
        losses = list(rng.normal(size=120).cumsum() * 0.3 + 50)
        window = int(rng.integers(1, 20))
        max_steps = int(rng.integers(1, 110))
        step, carry = scripted(losses)
        _, info = stabilizers.until_converged(step, carry, max_steps=max_steps, window=window)
        assert (int(info.steps), bool(info.converged)) == reference_steps(losses, max_steps, window)


def test_inactive_does_not_run():
    step, carry = scripted([1.0])
    out, info = stabilizers.until_converged(step, carry, max_steps=10, window=3, active=False)
    chex.assert_trees_all_equal(out, carry)
    assert int(info.steps) == 0 and not bool(info.converged)
    assert float(info.window_loss) == math.inf


def test_jit_and_no_jit_agree_and_carry_keeps_dtypes():
    losses = [5.0] * 10 + [4.0] * 10 + [4.5] * 10
    step, carry = scripted(losses)
    run = lambda c: stabilizers.until_converged(step, c, max_steps=50, window=10)  # noqa: E731
    a = run(carry)
    b = jax.jit(run)(carry)
    chex.assert_trees_all_equal(a, b)
    assert a[0][0].dtype == jnp.int32 and a[0][1].dtype == jnp.float32
    assert int(a[1].steps) == 30


def test_under_vmap_each_seed_stops_at_its_own_step_and_then_stays_still():
    # seed s: the loss falls for s + 1 windows of 5 and rises in the next one, so seed s
    # stops after 5 (s + 2) steps
    def losses_for(s):
        return jnp.where(jnp.arange(40) < 5 * (s + 1), 10.0 - jnp.arange(40) * 0.1, 100.0)

    def run(s, active):
        table = losses_for(s)

        def step(carry):
            k, x = carry
            return (k + 1, x * 1.5 + 1.0), table[k]

        return stabilizers.until_converged(
            step, (jnp.int32(0), jnp.float32(1.0)), max_steps=40, window=5, active=active
        )

    seeds = jnp.arange(4)
    active = jnp.array([True, True, False, True])
    (k, x), info = jax.jit(jax.vmap(run))(seeds, active)
    np.testing.assert_array_equal(np.asarray(info.steps), [10, 15, 0, 25])
    np.testing.assert_array_equal(np.asarray(k), [10, 15, 0, 25])
    for s in range(4):  # exactly the unbatched result: finished seeds were not updated
        (k1, x1), info1 = run(jnp.int32(s), active[s])
        assert int(k1) == int(k[s]) and float(x1) == float(x[s])
        assert int(info1.steps) == int(info.steps[s])


def test_until_converged_rejects_bad_arguments():
    step, carry = scripted([1.0])
    with pytest.raises(ValueError, match="max_steps"):
        stabilizers.until_converged(step, carry, max_steps=0)
    with pytest.raises(ValueError, match="window"):
        stabilizers.until_converged(step, carry, max_steps=5, window=0)
    with pytest.raises(ValueError, match="scalar loss"):
        stabilizers.until_converged(lambda c: (c, jnp.ones(2)), carry, max_steps=5)
    with pytest.raises(ValueError, match="structure"):
        stabilizers.until_converged(lambda c: (c[0], 1.0), carry, max_steps=5)
    with pytest.raises(ValueError, match="step must be"):
        stabilizers.until_converged("step", carry, max_steps=5)


# ----------------------------------------------------------------------------- switch_off


def run_rule(rule, metrics):
    s = rule.init()
    trace = []
    for m in metrics:
        s = rule.update(s, m)
        trace.append(bool(s.active))
    return s, trace


def test_text_rule_switches_off_at_the_first_decrease_for_good():
    rule = stabilizers.switch_off(patience=1, compare="previous", initial=0.0)
    s, trace = run_rule(rule, [0.3, 0.8, 0.8, 1.1, 1.0, 2.0, 3.0])
    assert trace == [True, True, True, True, False, False, False]
    assert int(s.checks) == 5 and int(s.misses) == 1
    np.testing.assert_allclose(float(s.reference), 1.0)  # frozen at the switch-off check


def test_text_rule_with_zero_start_switches_off_on_a_negative_first_estimate():
    rule = stabilizers.switch_off(patience=1, compare="previous", initial=0.0)
    _, trace = run_rule(rule, [-0.01, 5.0])
    assert trace == [False, False]
    rule = stabilizers.switch_off(patience=1, compare="previous")  # initial: -inf
    _, trace = run_rule(rule, [-0.01, 5.0])
    assert trace == [True, True]


def test_image_rule_counts_misses_against_the_best_cumulatively():
    rule = stabilizers.switch_off(patience=5, compare="best")
    # best: 1, 2, 2(m1), 3, 2.5(m2), 2.9(m3), 3.5, 3.4(m4), 3.6, 1.0(m5) -> off at check 10
    metrics = [1.0, 2.0, 1.5, 3.0, 2.5, 2.9, 3.5, 3.4, 3.6, 1.0, 9.0]
    s, trace = run_rule(rule, metrics)
    assert trace == [True] * 9 + [False, False]
    assert int(s.misses) == 5 and int(s.checks) == 10
    np.testing.assert_allclose(float(s.reference), 3.6)
    rule = stabilizers.switch_off(patience=5, compare="best", reset_on_improvement=True)
    _, trace = run_rule(rule, metrics)
    assert all(trace)  # never 5 misses in a row


def test_minimize_and_min_delta():
    rule = stabilizers.switch_off(patience=2, compare="best", maximize=False, min_delta=0.1)
    # losses: 5 (best), 4.95 (improves by < 0.1: miss 1), 4.0 (best), 4.2 (miss 2) -> off
    s, trace = run_rule(rule, [5.0, 4.95, 4.0, 4.2])
    assert trace == [True, True, True, False]
    np.testing.assert_allclose(float(s.reference), -4.0)


def test_switch_off_under_vmap_each_seed_keeps_its_phase():
    rule = stabilizers.switch_off(patience=1, compare="previous", initial=0.0)
    metrics = jnp.array([[0.1, 0.2, 0.3], [0.5, 0.4, 0.9], [-0.1, 1.0, 2.0]])  # [seed, check]

    def run(ms):
        def body(s, m):
            s = rule.update(s, m)
            return s, s.active

        return jax.lax.scan(body, rule.init(), ms)

    s, trace = jax.jit(jax.vmap(run))(metrics)
    np.testing.assert_array_equal(
        np.asarray(trace), [[True, True, True], [True, False, False], [False, False, False]]
    )
    np.testing.assert_array_equal(np.asarray(s.checks), [3, 2, 1])


def test_switch_off_rejects_bad_arguments():
    with pytest.raises(ValueError, match="patience"):
        stabilizers.switch_off(patience=0)
    with pytest.raises(ValueError, match="compare"):
        stabilizers.switch_off(compare="last")
    with pytest.raises(ValueError, match="initial"):
        stabilizers.switch_off(initial=float("nan"))
    with pytest.raises(ValueError, match="min_delta"):
        stabilizers.switch_off(min_delta="0.1")


def test_public_api():
    for name in ["until_converged", "switch_off", "InnerLoopInfo", "SwitchOff", "SwitchOffState"]:
        assert name in stabilizers.__all__ and hasattr(stabilizers, name)


def test_switch_off_state_stays_finite_without_an_initial_reference():
    for initial in (None, -math.inf):
        rule = stabilizers.switch_off(patience=2, compare="best", initial=initial)
        s = rule.init()
        assert bool(jnp.isfinite(s.reference))
        s = rule.update(s, -1e6)  # any first metric improves on "no reference"
        assert int(s.misses) == 0 and float(s.reference) == -1e6
