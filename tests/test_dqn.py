"""DQN: TD targets on probe environments, target copies, truncation, seeds, learning, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rl_testing import first_seed, register, run_steps, stepper

from agents import dqn, offpolicy
from benchmarks import harness

GAMMA = 0.5


def tiny(**kw):
    base = dict(
        num_envs=2,
        buffer_size=256,
        batch_size=32,
        hidden=(16,),
        learning_starts=32,
        train_every=2,
        target_every=8,
        epsilon_steps=1,
        epsilon_start=1.0,
        epsilon_end=1.0,  # uniform exploration: every action is tried
        learning_rate=1e-2,
        gamma=GAMMA,
        eval_episodes=2,
    )
    base.update(kw)
    return dqn.Config(**base)


def q_values(state, config, obs):
    s = dqn._setup(offpolicy.static(config))
    return np.asarray(s.network.apply(state.learner.params, jnp.asarray(obs, jnp.float32)))


def tree_equal(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(jnp.array_equal, a, b)))


def test_q_learning_td_known_values_dqn_and_double():
    q_tm1 = jnp.array([1.0, 2.0])
    q_t_target = jnp.array([3.0, 5.0])
    q_t_online = jnp.array([4.0, -1.0])  # prefers action 0
    td = dqn.q_learning_td(q_tm1, jnp.int32(1), 1.0, 0.5, q_t_target, q_t_target)
    np.testing.assert_allclose(td, 1.0 + 0.5 * 5.0 - 2.0)  # max of the target network
    td = dqn.q_learning_td(q_tm1, jnp.int32(0), 1.0, 0.5, q_t_target, q_t_online)
    np.testing.assert_allclose(td, 1.0 + 0.5 * 3.0 - 1.0)  # online picks, target values
    td = dqn.q_learning_td(q_tm1, jnp.int32(0), 1.0, 0.0, q_t_target, q_t_target)
    np.testing.assert_allclose(td, 0.0)  # terminal: no bootstrap
    # the target is a constant: the gradient flows through q_tm1 only
    g = jax.grad(lambda q: dqn.q_learning_td(q, jnp.int32(1), 0.0, 0.5, q, q))(q_tm1)
    np.testing.assert_allclose(g, [0.0, -1.0])
    with pytest.raises(ValueError, match="one transition"):
        dqn.q_learning_td(q_tm1[None], jnp.int32(0), 1.0, 0.5, q_t_target, q_t_target)


def test_hard_copy_at_the_configured_env_steps_and_two_step_probe_values():
    # Q(s1, a) = 1[a = 1] (last step, terminal); Q(s0, .) = gamma * max_a Q(s1, a) = gamma.
    config = tiny(env=register(2, "terminate", False, True), learning_starts=10, target_every=6)
    init, step = stepper(dqn, config)
    state = init(jax.random.key(0))
    copies, moved = [], []
    for _ in range(20):
        before = state.learner.target_params
        state, _ = step(state)
        env_steps = int(state.count.value) * config.num_envs
        if tree_equal(state.learner.params, state.learner.target_params):
            copies.append(env_steps)
        if not tree_equal(before, state.learner.target_params):
            moved.append(env_steps)
    # gradient steps at env steps 12, 14, ...; a copy after every third one. (Before
    # learning starts the online params do not move: target == online trivially.)
    assert [c for c in copies if c > 10] == [16, 22, 28, 34, 40]
    assert moved == [16, 22, 28, 34, 40]

    state, _ = run_steps(step, state, 600)
    q = q_values(state, config, np.eye(2))
    np.testing.assert_allclose(q[1], [0.0, 1.0], atol=0.05)
    np.testing.assert_allclose(q[0], [GAMMA, GAMMA], atol=0.05)


@pytest.mark.parametrize(
    "end, value, replay", [("terminate", 1.0, "flashbax"), ("truncate", 1 / (1 - GAMMA), "ring")]
)
def test_truncation_bootstraps_and_termination_does_not(end, value, replay):
    # Reward 1 on every one-step episode; the next state is the start state again:
    # Q = 1 when the step terminates, 1 / (1 - gamma) when the time limit cuts it.
    config = tiny(env=register(1, end, False, False), replay=replay, loss="huber", huber_delta=10.0)
    init, step = stepper(dqn, config)
    state, _ = run_steps(step, init(jax.random.key(0)), 400)
    np.testing.assert_allclose(q_values(state, config, np.ones((1, 1))), value, atol=0.06)
    if replay == "ring":  # what was stored: not terminated; s_t = the final observation
        np.testing.assert_array_equal(np.asarray(state.replay.data.terminated_t), False)
        np.testing.assert_array_equal(np.asarray(state.replay.data.obs_t), 1.0)


def test_ema_target_moves_by_tau_every_gradient_step():
    config = tiny(env="CartPole-v1", learning_starts=4, target="ema", tau=0.25)
    init, step = stepper(dqn, config)
    state, _ = run_steps(step, init(jax.random.key(0)), 2)
    before = state.learner.target_params
    state, _ = step(state)
    expected = jax.tree.map(lambda t, o: 0.75 * t + 0.25 * o, before, state.learner.params)
    chex.assert_trees_all_close(state.learner.target_params, expected, rtol=1e-5, atol=1e-6)


def test_no_target_uses_the_online_params():
    config = tiny(env="CartPole-v1", learning_starts=4, target="none")
    init, step = stepper(dqn, config)
    state, metrics = run_steps(step, init(jax.random.key(0)), 4)
    chex.assert_trees_all_equal(state.learner.target_params, state.learner.params)
    assert float(metrics["lag"]) == 0.0


def test_dqn_beats_a_random_policy_on_cartpole_and_seeds_differ():
    config = dqn.Config(
        num_envs=8,
        batch_size=64,
        hidden=(64, 64),
        learning_starts=1_000,
        train_every=4,
        target_every=200,
        epsilon_steps=8_000,
        learning_rate=1e-3,
        eval_episodes=8,
    )
    res = harness.run(
        dqn, config, iterations=2_500, seeds=2, segment_length=2_500, progress=False, plot=False
    )
    final = np.asarray(res.results["final"]["return"][0])
    # 20k env steps; a uniformly random policy averages about 22 on CartPole-v1
    assert np.all(final > 100), final
    params = res.states.learner.params
    for leaf in jax.tree.leaves(params):
        if leaf.ndim == 3:  # [seed, in, out] weights; biases start at zero for every seed
            assert not np.allclose(leaf[0], leaf[1])
    actions = np.asarray(res.states.replay.data.a_tm1)[:, :64]  # epsilon ~ 1 at first
    assert not np.array_equal(actions[0], actions[1])
    assert first_seed(res.states).count.value == 2_500


def test_config_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="unknown environment 'CartPole-v0'.*CartPole-v1"):
        dqn.check(dqn.Config(env="CartPole-v0"))
    with pytest.raises(ValueError, match="dqn needs a discrete action space.*Pendulum-v1"):
        dqn.check(dqn.Config(env="Pendulum-v1"))
    with pytest.raises(ValueError, match="target must be"):
        dqn.check(dqn.Config(target="soft"))
    with pytest.raises(ValueError, match="loss must be"):
        dqn.check(dqn.Config(loss="l1"))
    with pytest.raises(ValueError, match="replay must be"):
        dqn.check(dqn.Config(replay="prioritised"))
    with pytest.raises(ValueError, match="train_every"):
        dqn.check(dqn.Config(num_envs=4, train_every=6))
    with pytest.raises(ValueError, match="target_every"):
        dqn.check(dqn.Config(target_every=505))
    with pytest.raises(ValueError, match="learning_starts"):
        dqn.check(dqn.Config(learning_starts=10_005))
    with pytest.raises(ValueError, match="num_envs"):
        dqn.check(dqn.Config(num_envs=0))
    with pytest.raises(ValueError, match="unknown environment"):
        dqn.init(jax.random.key(0), dqn.Config(env="NoSuchEnv"))


def test_learn_and_copy_stay_conditionals_under_a_vmap_over_seeds():
    """Steps without a gradient update do no gradient work for 8 vmapped seeds: the learn
    branch is a real conditional (an HLO `case`), not a `select` over both branches. The
    speed anchor (PureJaxRL's layout) keeps its two conditionals the same way."""
    import stabilizers
    from benchmarks import dqn_anchor

    c = tiny()
    keys = jnp.stack([jax.random.key(s) for s in range(8)])
    axes = stabilizers.seed_axes(jax.eval_shape(dqn.init, keys[0], c))
    vstep = jax.vmap(dqn.step, in_axes=(axes, None), out_axes=(axes, 0))
    states = jax.vmap(dqn.init, in_axes=(0, None), out_axes=axes)(keys, c)
    ours = jax.jit(vstep).lower(states, c).as_text()
    assert ours.count("stablehlo.case") >= 1
    plain = jax.jit(jax.vmap(dqn.step, in_axes=(0, None))).lower(
        jax.vmap(dqn.init, in_axes=(0, None))(keys, c), c
    )
    assert plain.as_text().count("stablehlo.case") == 0  # batched counters: selects instead

    anchor = jax.jit(jax.vmap(dqn_anchor.make_train(dqn.Config(), 100)))
    assert anchor.lower(keys).as_text().count("stablehlo.case") == 2
