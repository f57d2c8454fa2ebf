"""The RL field of the cross-field study: DQN's and SAC's traced target trackers, DQN's
LayerNorm, SAC's CrossQ critic, the programs and their rows."""

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stabilizers
from agents import crossq, dqn, offpolicy, sac
from benchmarks.cross_field import common, rl

# --------------------------------------------------------------------------- helpers


def _run(module, config, steps: int, seed: int = 0):
    """`steps` jitted steps with the config as a traced argument (as the harness runs it)."""
    step = jax.jit(module.step)
    state = jax.jit(module.init)(jax.random.key(seed), config)
    for _ in range(steps):
        state, metrics = step(state, config)
    return state, metrics


def _dqn(**kw):
    base = dict(
        env="CartPole-v1",
        num_envs=2,
        buffer_size=256,
        batch_size=16,
        hidden=(8,),
        learning_starts=8,
        train_every=2,
        target_every=8,
        epsilon_steps=16,
        eval_episodes=1,
    )
    return dqn.Config(**{**base, **kw})


def _sac(**kw):
    base = dict(total_steps=64, buffer_size=128, batch_size=16, hidden=(8,), learning_starts=8)
    return sac.Config(**{**base, **kw})


def _counted(learner):
    """The learner with its tracker's state as its count (`EmaState` and `PeriodicState`
    are different types holding the same count)."""
    return learner._replace(target_state=learner.target_state.count.value)


def _decay(tau: float) -> float:
    """The float32 decay that `ema(1 - tau)` uses, as a Python float."""
    return float(np.float32(1.0) - np.float32(tau))


# --------------------------------------------------------------------------- DQN


@pytest.mark.parametrize(
    "existing, tracker",
    [
        (dict(target="periodic"), dict(target_period=4, target_decay=0.0)),  # 8 env steps
        (dict(target="ema", tau=0.1), dict(target_period=1, target_decay=_decay(0.1))),
        (dict(target="none"), dict(target_period=1, target_decay=0.0)),
    ],
)
def test_dqn_tracker_is_the_existing_targets_bit_for_bit(existing, tracker):
    a, _ = _run(dqn, _dqn(**existing), 14)
    b, metrics = _run(dqn, _dqn(**{**existing, "target": "tracker"}, **tracker), 14)
    chex.assert_trees_all_equal(_counted(a.learner), _counted(b.learner))
    expected = stabilizers.lag(b.learner.params, b.learner.target_params)
    assert float(metrics["lag"]) == float(expected)


def test_dqn_tracker_period_and_decay_are_traced_leaves():
    config = _dqn(target="tracker", target_period=3, target_decay=0.5)
    leaves = {f.name for f in dataclasses.fields(config) if f.metadata.get("pytree_node", True)}
    assert {"target_period", "target_decay"} <= leaves
    # one compiled step serves every (period, decay): the trace does not depend on them
    state = dqn.init(jax.random.key(0), config)
    other = dataclasses.replace(config, target_period=7, target_decay=0.9)
    traces = [str(jax.make_jaxpr(dqn.step)(state, c)) for c in (config, other)]
    assert traces[0] == traces[1]


def test_dqn_layer_norm_before_each_hidden_relu_and_only_when_asked():
    for layer_norm, expected in ((False, set()), (True, {"LayerNorm_0", "LayerNorm_1"})):
        config = _dqn(hidden=(8, 4), layer_norm=layer_norm)
        params = dqn.init(jax.random.key(0), config).learner.params["params"]
        assert {k for k in params if k.startswith("LayerNorm")} == expected
        assert {k for k in params if k.startswith("Dense")} == {"Dense_0", "Dense_1", "Dense_2"}
    # the hidden features are normalized before the ReLU: with unit scale and zero bias the
    # first hidden layer's pre-activation has zero mean and unit variance per sample
    network = dqn._setup(offpolicy.static(config)).network
    params = dqn.init(jax.random.key(0), config).learner.params
    _, inter = network.apply(
        params, jnp.ones((3, 4)), capture_intermediates=True, mutable=["intermediates"]
    )
    normed = inter["intermediates"]["LayerNorm_0"]["__call__"][0]
    np.testing.assert_allclose(np.mean(normed, -1), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.var(normed, -1), 1.0, atol=1e-2)


# --------------------------------------------------------------------------- SAC


@pytest.mark.parametrize(
    "existing, tracker",
    [
        (dict(tau=0.05), dict(target_period=1, target_decay=_decay(0.05))),
    ],
)
def test_sac_tracker_is_the_existing_targets_bit_for_bit(existing, tracker):
    a, _ = _run(sac, _sac(**existing), 12)
    b, _ = _run(sac, _sac(**{**existing, "target": "tracker"}, **tracker), 12)
    chex.assert_trees_all_equal(_counted(a.learner), _counted(b.learner))


def test_sac_tracker_hard_copy_every_period():
    config = _sac(target="tracker", target_period=3, target_decay=0.0)
    state, _ = _run(sac, config, 8 + 3)  # 3 gradient steps: one copy, at the third
    chex.assert_trees_all_equal(state.learner.target_critic_params, state.learner.critic_params)
    state, _ = _run(sac, config, 8 + 4)  # one step after the copy
    lag = stabilizers.lag(state.learner.critic_params, state.learner.target_critic_params)
    assert float(lag) > 0


def test_crossq_normalizes_current_and_next_state_actions_in_one_batch():
    critic = crossq.Critic(hidden=(8,))
    key = jax.random.key(0)
    obs_tm1, obs_t = jax.random.normal(key, (2, 5, 3)) + jnp.array([[[0.0]], [[4.0]]])
    a_tm1, a_t = jnp.zeros((5, 1)), jnp.ones((5, 1))
    variables = crossq.Critic(hidden=(8,)).init(key, obs_tm1[0], a_tm1[0])
    ensemble = jax.tree.map(lambda x: jnp.stack([x, x]), variables)
    q_tm1, q_t, stats = crossq.joint_q(critic, ensemble, obs_tm1, a_tm1, obs_t, a_t)
    chex.assert_shape((q_tm1, q_t), (2, 5))
    # the input layer's running mean moved toward the mean over BOTH halves (10 rows)
    both = jnp.concatenate(
        [jnp.concatenate([obs_tm1, a_tm1], -1), jnp.concatenate([obs_t, a_t], -1)]
    )
    expected = 0.01 * jnp.mean(both, axis=0)
    np.testing.assert_allclose(stats["BatchRenorm_0"]["mean"][0], expected, rtol=1e-5, atol=1e-6)
    # the halves share statistics: evaluated alone, the next half gives other values
    alone, _ = critic.apply(variables, obs_t, a_t, train=True, mutable=["batch_stats"])
    assert not np.allclose(alone, q_t[0], atol=1e-3)


def test_crossq_without_a_target_never_reads_the_target_params():
    config = _sac(critic="crossq", target="none")
    state, _ = _run(sac, config, 10)
    # its target follows the online critic (age 0): a copy after every update
    chex.assert_trees_all_equal(state.learner.target_critic_params, state.learner.critic_params)
    poisoned = state._replace(
        learner=state.learner._replace(
            target_critic_params=jax.tree.map(
                lambda x: jnp.full_like(x, jnp.nan), state.learner.target_critic_params
            )
        )
    )
    after, metrics = jax.jit(sac.step)(poisoned, config)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(after.learner.critic_params))
    assert np.isfinite(float(metrics["critic_loss"]))


def test_crossq_with_a_copy_every_update_is_crossq_without_a_target():
    a, _ = _run(sac, _sac(critic="crossq", target="none"), 12)
    b, _ = _run(sac, _sac(critic="crossq", target="tracker", target_decay=0.0), 12)
    chex.assert_trees_all_close(a.learner.critic_params, b.learner.critic_params, atol=1e-5)
    assert set(a.learner.critic_params) == {"params", "batch_stats"}


def test_sac_config_errors_name_the_field():
    with pytest.raises(ValueError, match="critic"):
        sac.check(_sac(critic="wide"))
    with pytest.raises(ValueError, match="target"):
        sac.check(_sac(target="polyak"))


# --------------------------------------------------------------------------- the study


def test_rl_programs_cover_the_axes_with_even_grids_and_matched_ages():
    for quick in (True, False):
        programs = {p.name: p for p in rl.programs(quick)}
        assert {"dqn", "dqn_layernorm", "dqn_k0.25", "dqn_k4", "sac", "sac_crossq"} <= set(programs)
        assert {f"td3_d{d}" for d in (1, 2, 4, 8)} <= set(programs)
        for p in programs.values():
            assert p.field == "rl" and len(p.cells) % 2 == 0 or p.algorithm == "td3"
            p.module.check(p.config)
            for cell in p.cells:
                if "every" in cell.labels:
                    age = stabilizers.mean_age(
                        cell.values["target_period"], cell.values["target_decay"]
                    )
                    assert float(age) == pytest.approx(cell.labels["age"], rel=1e-4)
        mechanisms = {c.labels["mechanism"] for c in programs["dqn"].cells}
        assert mechanisms == {"none", "hard", "ema"}
        assert {c.labels["mechanism"] for c in programs["sac_crossq"].cells} == {
            "crossq",
            "crossq_ema",
        }
        assert programs["dqn_layernorm"].config.layer_norm
        assert programs["sac_crossq"].config.critic == "crossq"
        assert [programs[f"td3_d{d}"].config.policy_delay for d in (1, 2, 4, 8)] == [1, 2, 4, 8]


def test_scaling_programs_follow_the_rule():
    budget = rl.QUICK
    base = rl.dqn_config(budget)
    d = common.tracker("ema", budget.scaling_age)[1]
    for k in budget.scaling_ks:
        p = rl._scaling_program(budget, k)
        assert p.config.batch_size == round(base.batch_size * k)
        assert p.config.train_every == round(base.train_every * k)
        assert p.config.total_steps == base.total_steps  # the same env steps and samples
        assert p.config.learning_rate == pytest.approx(base.learning_rate * math.sqrt(k))
        decays = {c.labels["variant"]: c.values["target_decay"] for c in p.cells}
        assert decays == {"rule": pytest.approx(d**k), "control": d}


def _results(cells, seeds, values):
    return {
        "seeds": list(range(seeds)),
        "sweep": {"cell": list(range(cells))},
        "final": {"return": values.tolist()},
        "final_train": {"lag": np.zeros((cells, seeds)).tolist()},
        "diverged_at_iteration": (-np.ones((cells, seeds), int)).tolist(),
    }


@pytest.mark.parametrize("budget", [rl.QUICK, rl.FULL], ids=["quick", "full"])
def test_rows_have_the_schema_axes_and_normalization(monkeypatch, budget):
    seeds = 2
    floors = {rl.CARTPOLE: 10.0, rl.PENDULUM: -1200.0}
    monkeypatch.setattr(common, "initial_values", lambda d, m, c, s: np.full((c, s), floors[d]))
    monkeypatch.setattr(
        common, "learning_curve", lambda d, m, c, s: (np.array([0.0, 1.0]), np.ones((2, c, s)))
    )
    out = []
    for p in [
        *rl._dqn_programs(budget),
        rl._scaling_program(budget, 4.0),
        *rl._td3_programs(budget),
    ]:
        score = np.full((len(p.cells), seeds), 255.0 if p.task == rl.CARTPOLE else -300.0)
        score[0, 0] = np.nan
        out += rl.rows(p, _results(len(p.cells), seeds, score), p.task)
    final = common.finish(rl.ceilings(out))
    for r in final:
        assert set(common.ROW_KEYS) <= set(r) and r["field"] == "rl"
    age = [r for r in final if r["axis"] == "age" and r["program"] == "dqn"]
    ok = [r for r in age if r["score"] is not None]
    assert all(r["normalized"] == pytest.approx(0.5) and not r["failed"] for r in ok)
    assert all(r["failed"] for r in age if r["score"] is None)
    reference = [r for r in final if r["axis"] == "scaling" and r["variant"] == "reference"]
    assert reference and all(r["k"] == 1.0 and r["age"] == budget.scaling_age for r in reference)
    assert len(reference) == seeds  # one cell: the age axis's EMA cell at the rule's age
    partner = [r for r in final if r["axis"] == "partner"]
    assert sorted({r["ratio"] for r in partner}) == [1.0, 2.0, 4.0, 8.0]
    assert {r["setting"] for r in partner} == {"d = 1", "d = 2", "d = 4", "d = 8"}
    # Pendulum's ceiling is its best cell: every finite TD3 run reaches it
    assert all(r["ceiling"] == -300.0 for r in partner)
    assert {r["floor"] for r in final} == {10.0, -1200.0}
    assert rl.FAIL_BELOW > 0 and "failed" in rl.DEFINITION


@pytest.mark.parametrize("budget", [rl.QUICK, rl.FULL], ids=["quick", "full"])
def test_minatar_program_is_the_papers_dqn_on_a_short_run_with_a_measured_ceiling(budget):
    from agents import dqn

    program = next(p for p in rl.programs(budget is rl.QUICK) if p.name == "dqn_minatar")
    c, paper = program.config, dqn.PRESETS["minatar"]
    assert program.task == rl.MINATAR == c.env and program.algorithm == "dqn_minatar"
    assert c.target == "tracker" and c.total_steps == budget.minatar_frames
    same = ("network", "optimizer", "loss", "learning_rate", "batch_size", "rmsprop_momentum")
    assert all(getattr(c, f) == getattr(paper, f) for f in same)
    assert c.epsilon_steps == c.total_steps // 2 and c.learning_starts <= paper.learning_starts
    ages = {cell.labels["age"] for cell in program.cells}
    assert set(budget.minatar_ages) <= ages and len(program.cells) % 2 == 0
    assert rl.budget_of(program) is budget
    # the ceiling of its rows is the best IQM over its cells
    rows = [
        dict(
            task=rl.MINATAR,
            program="m",
            mechanism="ema",
            age=a,
            variant="base",
            score=v,
            untrained=0.5,
            failed=False,
        )
        for a, vs in ((10.0, [2.0, 3.0, 4.0]), (100.0, [6.0, 7.0, 8.0]))
        for v in vs
    ]
    out = rl.ceilings(rows)
    assert all(r["ceiling"] == pytest.approx(7.0) for r in out)
