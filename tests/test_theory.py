"""The linear theory of target networks (benchmarks.cross_field.theory) and Baird's problem."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stabilizers
from benchmarks import baird, harness, toy
from benchmarks.cross_field import theory

BAIRD = baird.Config()


def test_baird_features_and_matrices_by_hand():
    phi = baird.features().astype(np.float64)
    for s in range(6):  # x(i) = 2 e_i + e_8 for the upper states
        expected = np.zeros(8)
        expected[s], expected[7] = 2, 1
        np.testing.assert_array_equal(phi[s], expected)
    np.testing.assert_array_equal(phi[6], [0, 0, 0, 0, 0, 0, 1, 2])
    u = np.array([0.25] * 6 + [1.0, -0.5])  # the features' null vector
    np.testing.assert_array_equal(phi @ u, np.zeros(7))

    m = theory.baird_weight_matrices(BAIRD)
    a = sum(np.outer(phi[s], phi[s]) for s in range(7)) / 7
    b = 0.99 * sum(np.outer(phi[s], phi[6]) for s in range(7)) / 7  # pi: all to state 7
    np.testing.assert_allclose(m["a"], a, rtol=1e-14)
    np.testing.assert_allclose(m["b"], b, rtol=1e-14)
    assert np.linalg.matrix_rank(m["a"]) == 7
    # the value coordinates: Phi (w - lr (A w - B w_bar)) = v - lr (A_v v - B_v v_bar)
    a_v, b_v = theory.baird_matrices(BAIRD)
    np.testing.assert_allclose(phi @ m["a"], a_v @ phi, atol=1e-12)
    np.testing.assert_allclose(phi @ m["b"], b_v @ phi, atol=1e-12)


def test_expected_update_is_the_average_of_sampled_updates():
    m = theory.baird_weight_matrices(BAIRD)
    w, w_bar = np.asarray(jax.random.normal(jax.random.key(0), (2, 8)))
    grad = jax.jit(jax.vmap(jax.grad(baird.td_loss), in_axes=(None, None, 0, 0, None)))
    s_tm1, s_t = np.divmod(np.arange(49), 7)  # every (S, S') pair, each of probability 1/49
    per_pair = np.asarray(grad(w, w_bar, s_tm1, s_t, 0.99), np.float64)
    expected = m["a"] @ w - m["b"] @ w_bar  # the gradient of S&B eq. 11.9
    np.testing.assert_allclose(per_pair.mean(axis=0), expected, rtol=1e-5, atol=1e-5)
    # the sampler draws S and S' uniformly and independently: its pairs are those 49
    s, s_next = baird.transitions(jax.random.key(1), dataclasses.replace(BAIRD, batch_size=4900))
    counts = np.bincount(np.asarray(s) * 7 + np.asarray(s_next), minlength=49)
    assert counts.min() > 50 and counts.max() < 150
    # one expected step of the algorithm is w - lr (A w - B w_bar)
    cfg = baird.Config(update="expected", learning_rate=0.1, every=1000)
    state = baird.init(jax.random.key(0), cfg)._replace(online=jnp.asarray(w, jnp.float32))
    state = state._replace(target=jnp.asarray(w_bar, jnp.float32))
    new, _ = jax.jit(baird.step, static_argnums=1)(state, cfg)
    np.testing.assert_allclose(new.online, w - 0.1 * expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(new.target, state.target)  # not due


def test_radius_for_period_one_is_plain_td():
    a, b = theory.baird_matrices(BAIRD)
    m = theory.baird_weight_matrices(BAIRD)
    for lr in (0.003, 0.01, 0.3):
        td = np.abs(np.linalg.eigvals(np.eye(7) - lr * (a - b))).max()
        for every, decay in ((1, 0.0), (1, 1e-12)):
            assert theory.radius(a, b, lr, every, decay) == pytest.approx(td, rel=1e-9)
        # in weight space: the same top eigenvalue (plus the null direction's 1)
        weights = np.abs(np.linalg.eigvals(np.eye(8) - lr * (m["a"] - m["b"])))
        assert weights.max() == pytest.approx(td, rel=1e-9)
    assert theory.radius(a, b, 0.01, 1, 0.0) == pytest.approx(1.0024, abs=1e-4)


@pytest.mark.parametrize(
    "lr,every,decay,per_period",
    [
        (0.01, 10, 0.0, 1.0189),  # hard copy K = 10: diverges
        (0.01, 50, 0.0, 1.0161),
        (0.01, 100, 0.0, 0.9798),  # K = 100: converges
        (0.01, 500, 0.0, 0.9887),
        (0.01, 1, 0.9, 1.0015),  # EMA tau = 0.1: diverges
        (0.01, 1, 0.95, 1.0006),
        (0.01, 1, 0.99, 0.9997),  # tau = 0.01: converges
        (0.1, 10, 0.0, 0.9824),
        (0.1, 1, 0.9, 0.9962),
    ],
)
def test_research_numbers(lr, every, decay, per_period):
    a, b = theory.baird_matrices(BAIRD)
    r = theory.radius(a, b, lr, every, decay)
    assert r**every == pytest.approx(per_period, abs=1e-4)
    assert (r < 1) == (per_period < 1)


def test_weight_space_adds_only_the_null_directions_unit_eigenvalue():
    m = theory.baird_weight_matrices(BAIRD)
    top = np.sort(np.abs(np.linalg.eigvals(theory.period_map(m["a"], m["b"], 0.01, 100, 0.0))))
    assert top[-1] == pytest.approx(1.0, abs=1e-9)
    assert top[-2] == pytest.approx(0.9798, abs=1e-4)


def test_toy_radius_without_target_is_the_closed_form():
    cfg = toy.Config()
    a, b = theory.toy_matrices(cfg)
    lam = np.linalg.eigvalsh(toy.problem(cfg)[0].astype(np.float64))
    for lr in (0.1, 0.5, 0.95, 1.2, 2.5):
        closed = np.abs(1 - lr * (1 - lam)).max()
        assert theory.radius(a, b, lr, 1, 0.0) == pytest.approx(closed, rel=1e-9)


def test_scaled_power_and_radius_past_overflow():
    j = np.random.default_rng(0).normal(size=(6, 6))
    for n in (1, 2, 7, 64):
        x, log_scale = theory._scaled_power(j, n)
        np.testing.assert_allclose(x * np.exp(log_scale), np.linalg.matrix_power(j, n), rtol=1e-9)
    a, b = theory.baird_matrices(BAIRD)
    r = theory.radius(a, b, 3.0, 2001, 0.0)  # J^2001 overflows float64; its radius does not
    assert np.isfinite(r) and r > 1


def test_trackers_have_the_mean_age():
    for age in (1, 3, 10):
        every, decay = theory.tracker("hard", age)
        assert float(stabilizers.mean_age(every, decay)) == pytest.approx(age)
        every, decay = theory.tracker("ema", age)
        assert float(stabilizers.mean_age(every, decay)) == pytest.approx(age, rel=1e-5)
    assert theory.tracker("none", 5) == theory.tracker("ema", 0) == (1, 0.0)


def test_baird_boundary_is_a_line_of_learning_rate_times_age():
    a, b = theory.baird_matrices(BAIRD)
    for lr in (0.001, 0.01, 0.1, 1.0):
        assert lr * theory.stable_from(a, b, lr, "ema") == pytest.approx(0.5, abs=0.03)
    assert 0.01 * theory.stable_from(a, b, 0.01, "hard") == pytest.approx(0.38, abs=0.02)


@pytest.mark.parametrize(
    "name,lrs,ages,iterations",
    [("baird", (0.3,), (3,), 5000), ("toy", (0.4, 1.6), (3,), 1000)],
)
def test_prediction_agrees_with_measurement_far_from_the_boundary(name, lrs, ages, iterations):
    problem = dataclasses.replace(theory.PROBLEMS[name], lrs=lrs, ages=ages, iterations=iterations)
    measured = theory.measured_verdict(theory.measure(problem, seeds=5))
    predicted = theory.predicted_verdict(theory.predict(problem), iterations)
    decided = predicted != 0
    assert decided.sum() >= 3
    np.testing.assert_array_equal(measured[decided], predicted[decided])
    # no target diverges at the largest lr, an EMA of age 3 converges at every lr
    assert predicted[-1, 0, 0] == -1 and (predicted[:, 0, 1] == 1).all()


def test_baird_smoke_preset_runs_in_the_harness():
    res = harness.run(
        baird, baird.PRESETS["smoke"], iterations=200, seeds=2, progress=False, plot=False
    )
    assert res.status == "completed"
    assert res.results["final"]["finite"] == [[1.0, 1.0]]
    assert res.results["units"] == "transitions"


def test_landmarks_and_the_map(tmp_path):
    assert theory.parse_landmark("DQN=0.25") == theory.Landmark("DQN", 0.25)
    mark = theory.parse_landmark("BYOL=0.2:99@toy")
    assert mark.lr == 0.2 and mark.lr_age == pytest.approx(19.8) and mark.problem == "toy"
    with pytest.raises(ValueError, match="landmark"):
        theory.parse_landmark("nothing")
    small = {"toy": dataclasses.replace(theory.PROBLEMS["toy"], lrs=(0.4, 1.6), ages=(3,))}
    verdicts = {"toy": np.array([[[1, 1], [1, 0]], [[-1, 1], [-1, 0]]])}
    path = tmp_path / "map.png"
    tiny = theory.Landmark("CT best age 3", 0.003)  # below every panel: noted, not drawn
    off = theory.plot_map(str(path), verdicts, (*theory.LANDMARKS, mark, tiny), problems=small)
    assert path.stat().st_size > 10_000
    assert off == ["CT best age 3"]
