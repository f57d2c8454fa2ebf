"""TD3 and DDPG: targets, probe values, the delayed actor and targets, learning, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rl_testing import register, run_steps, stepper

from agents import td3
from agents.networks import ensemble_apply
from benchmarks import algorithm, harness

GAMMA = 0.5


def test_clipped_double_q_target_takes_the_minimum():
    y = td3.clipped_double_q_target(jnp.float32(1.0), jnp.float32(0.5), jnp.array([4.0, 2.0]))
    np.testing.assert_allclose(y, 1.0 + 0.5 * 2.0)
    y = td3.clipped_double_q_target(jnp.float32(1.0), jnp.float32(0.0), jnp.array([4.0, 2.0]))
    np.testing.assert_allclose(y, 1.0)  # terminal
    with pytest.raises(ValueError, match="one transition"):
        td3.clipped_double_q_target(jnp.ones(2), jnp.float32(0.5), jnp.ones((2, 2)))


def test_delayed_actor_and_targets_then_two_step_probe_values():
    # r(a) = 1 - (a - 0.5)^2 on the second step: pi(s1) -> 0.5, Q(s1, 0.5) = 1 and
    # Q(s0, pi(s0)) = gamma * E[Q(s1, pi_bar(s1) + smoothing noise)] = gamma (1 - 0.2^2).
    config = td3.Config(
        env=register(2, "terminate", True, True),
        hidden=(32, 32),
        batch_size=64,
        buffer_size=2_000,
        learning_starts=1,
        policy_delay=3,
        actor_learning_rate=3e-3,
        critic_learning_rate=3e-3,
        tau=0.05,
        gamma=GAMMA,
        eval_episodes=2,
    )
    init, step = stepper(td3, config)
    state = init(jax.random.key(0))
    assert jax.tree.leaves(state.learner.critic_params)[0].shape[0] == 2  # twin critics
    moved = {"actor": [], "critic": [], "targets": []}
    for i in range(1, 10):
        before = state.learner
        state, _ = step(state)
        for name, a, b in [
            ("actor", before.actor_params, state.learner.actor_params),
            ("critic", before.critic_params, state.learner.critic_params),
            ("targets", before.targets, state.learner.targets),
        ]:
            if not all(jax.tree.leaves(jax.tree.map(jnp.array_equal, a, b))):
                moved[name].append(i)
    # gradient steps from the 2nd step on (learning_starts = 1); the actor and the targets
    # move on every third of them, and only then
    assert moved["critic"] == list(range(2, 10))
    assert moved["actor"] == [4, 7]
    assert moved["targets"] == [4, 7]

    state, _ = run_steps(step, state, 1_800)
    s = td3._setup(config)
    obs = jnp.eye(2)
    action = s.actor.apply(state.learner.actor_params, obs)
    np.testing.assert_allclose(action[1], [0.5], atol=0.1)
    q = ensemble_apply(s.critic, state.learner.critic_params, obs, action)  # [critics, 2]
    np.testing.assert_allclose(q[:, 1], 1.0, atol=0.06)
    np.testing.assert_allclose(q[:, 0], GAMMA * (1 - 0.2**2), atol=0.06)


def test_ddpg_is_td3_with_one_critic_no_delay_no_smoothing():
    p = td3.PRESETS["ddpg"]
    assert (p.num_critics, p.policy_delay, p.policy_noise, p.noise_clip) == (1, 1, 0.0, 0.0)
    t = td3.Config()
    assert (t.num_critics, t.policy_delay, t.policy_noise, t.noise_clip) == (2, 2, 0.2, 0.5)
    assert p == t.replace(num_critics=1, policy_delay=1, policy_noise=0.0, noise_clip=0.0)
    entry = algorithm.load("ddpg")  # the registry's DDPG is this preset of TD3
    assert entry.module is td3 and entry.config == p and entry.name == "ddpg"


def test_td3_improves_pendulum_and_seeds_differ(tmp_path):
    config = td3.Config(
        hidden=(32, 32),
        batch_size=64,
        learning_starts=400,
        actor_learning_rate=3e-3,
        critic_learning_rate=3e-3,
        gamma=0.98,
        eval_episodes=4,
    )
    res = harness.run(
        td3,
        config,
        iterations=4_000,
        seeds=2,
        segment_length=4_000,
        out_dir=tmp_path,
        progress=False,
        plot=False,
    )
    initial = np.asarray(harness.read_log(tmp_path)[0]["eval"]["return"])
    final = np.asarray(res.results["final"]["return"][0])
    # 4000 env steps (20 episodes): the deterministic policy starts near -1500 (random
    # actions average about -1200) and swings up from some starts
    assert np.mean(final) > np.mean(initial) + 500, (initial, final)
    params = res.states.learner.actor_params
    weights = [leaf for leaf in jax.tree.leaves(params) if leaf.ndim == 3]
    assert not np.allclose(weights[0][0], weights[0][1])  # different initialisations
    actions = np.asarray(res.states.replay.data.a_tm1)[:, :50]
    assert not np.allclose(actions[0], actions[1])  # different exploration


def test_config_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="td3 needs a continuous.*CartPole-v1.*dqn"):
        td3.check(td3.Config(env="CartPole-v1"))
    with pytest.raises(ValueError, match="unknown environment 'Pendulum-v0'.*Pendulum-v1"):
        td3.check(td3.Config(env="Pendulum-v0"))
    with pytest.raises(ValueError, match="policy_delay"):
        td3.check(td3.Config(policy_delay=0))
    with pytest.raises(ValueError, match="learning_starts"):
        td3.check(td3.Config(num_envs=4, learning_starts=10))
