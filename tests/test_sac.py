"""SAC: the squashed Gaussian, the soft target, the temperature, a probe, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rl_testing import first_seed, register

from agents import sac
from agents.networks import ensemble_apply
from benchmarks import harness


def test_squashed_gaussian_log_density_is_the_change_of_variables():
    mean, log_std = jnp.array([0.3, -1.0]), jnp.array([-0.5, 0.2])
    noise = jnp.array([0.7, -1.3])
    a, log_pi = sac.squashed_gaussian(mean, log_std, noise)
    u = np.asarray(mean + jnp.exp(log_std) * noise, np.float64)
    std = np.exp(np.asarray(log_std, np.float64))
    gauss = -0.5 * ((u - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)
    expected = np.sum(gauss - np.log(1 - np.tanh(u) ** 2))
    np.testing.assert_allclose(a, np.tanh(u), rtol=1e-6)
    np.testing.assert_allclose(log_pi, expected, rtol=1e-5)
    # far in the tails the exact form stays finite where log(1 - tanh^2) would not
    _, log_pi = sac.squashed_gaussian(jnp.array([12.0]), jnp.array([0.0]), jnp.array([0.0]))
    np.testing.assert_allclose(
        log_pi,
        -0.5 * math.log(2 * math.pi) - 2 * (math.log(2) - 12.0 - math.log1p(math.exp(-24.0))),
        rtol=1e-6,
    )
    # reparameterised: gradients reach the mean and the log-std
    g = jax.grad(lambda m, s: sac.squashed_gaussian(m, s, noise)[0].sum(), argnums=(0, 1))(
        mean, log_std
    )
    assert all(np.all(np.abs(x) > 0) for x in g)
    with pytest.raises(ValueError, match="one state"):
        sac.squashed_gaussian(mean[None], log_std[None], noise[None])


def test_soft_q_target_and_temperature_gradient():
    y = sac.soft_q_target(jnp.float32(1.0), jnp.float32(0.5), jnp.array([3.0, 2.0]), -1.0, 0.1)
    np.testing.assert_allclose(y, 1.0 + 0.5 * (2.0 + 0.1))
    # entropy above the target (log pi + H_target < 0): the temperature goes down
    grad = jax.grad(sac._alpha_loss)(jnp.float32(0.0), jnp.array([-3.0, -2.0]), -1.0)
    assert grad > 0  # gradient descent lowers log(alpha)
    grad = jax.grad(sac._alpha_loss)(jnp.float32(0.0), jnp.array([1.0, 2.0]), -1.0)
    assert grad < 0


def test_truncation_probe_bootstraps():
    # Constant reward 1, every step truncated back to the same state: with a negligible
    # fixed temperature Q = 1 / (1 - gamma) = 2.
    config = sac.Config(
        env=register(1, "truncate", True, False),
        hidden=(32, 32),
        batch_size=64,
        buffer_size=1_000,
        learning_starts=100,
        critic_learning_rate=3e-3,
        actor_learning_rate=3e-3,
        alpha_learning_rate=0.0,
        initial_alpha=1e-4,
        tau=0.05,
        gamma=0.5,
        eval_episodes=2,
    )
    res = harness.run(
        sac, config, iterations=800, seeds=2, segment_length=800, progress=False, plot=False
    )
    state = first_seed(res.states)
    s = sac._setup(config)
    q = ensemble_apply(
        s.critic, state.learner.critic_params, jnp.ones((3, 1)), jnp.array([[-0.5], [0.0], [0.5]])
    )
    np.testing.assert_allclose(q, 2.0, atol=0.1)
    np.testing.assert_array_equal(np.asarray(state.replay.data.terminated_t), False)
    assert float(jnp.exp(state.learner.log_alpha)) == pytest.approx(1e-4)
    # two seeds: different initialisations and different exploration
    actor = [leaf for leaf in jax.tree.leaves(res.states.learner.actor_params) if leaf.ndim == 3]
    assert not np.allclose(actor[0][0], actor[0][1])
    actions = np.asarray(res.states.replay.data.a_tm1)[:, :50]
    assert not np.allclose(actions[0], actions[1])


def test_config_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="sac needs a continuous.*CartPole-v1"):
        sac.check(sac.Config(env="CartPole-v1"))
    with pytest.raises(ValueError, match="unknown environment"):
        sac.check(sac.Config(env="pendulum"))
    with pytest.raises(ValueError, match="num_critics"):
        sac.check(sac.Config(num_critics=0))
