"""Brax tasks behind the gymnax API: time limits truncate, falls terminate, a reset after
either is fresh; TD3, DDPG and SAC train on one through the real entry point; bad names and
DQN are refused in one line."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from agents import brax_envs, envs
from benchmarks import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "brax:inverted_pendulum"


@pytest.fixture(scope="module")
def pendulum():
    """The task with a 3-step time limit, its jitted reset and step (one compile each)."""
    env, params = envs.make(NAME)
    params = params.replace(max_steps_in_episode=3)
    reset = jax.jit(env.reset)
    step = jax.jit(env.step)
    return env, params, reset, step


def test_spaces_and_names():
    env, params = envs.make(NAME)
    obs_space, action_space = env.observation_space(params), env.action_space(params)
    assert isinstance(obs_space, spaces.Box) and obs_space.shape == (4,)
    assert isinstance(action_space, spaces.Box) and action_space.shape == (1,)
    assert (action_space.low, action_space.high) == (-1.0, 1.0)
    assert params.max_steps_in_episode == brax_envs.EPISODE_LENGTH == 1000
    assert envs.max_episode_steps(params, NAME) == 1000
    assert {"brax:hopper", "brax:halfcheetah", NAME} <= set(brax_envs.names())
    assert brax_envs.parse("brax:hopper") == ("hopper", "spring")
    assert brax_envs.parse("brax:hopper@mjx") == ("hopper", "mjx")
    with pytest.raises(ValueError, match="unknown brax environment 'nope'.*brax:hopper"):
        envs.make("brax:nope")
    with pytest.raises(ValueError, match="unknown brax backend 'warp'"):
        envs.make("brax:hopper@warp")


def test_the_time_limit_truncates_and_the_reset_is_fresh(pendulum):
    env, params, reset, step = pendulum
    obs0, state = reset(jax.random.key(0), params)
    zero = jnp.zeros((1,))
    for t in range(1, 4):
        key = jax.random.key(100 + t)
        obs, new, reward, terminated, truncated, info = step(key, state, zero, params)
        # one pytree, shapes and dtypes included, before and after a step
        chex.assert_trees_all_equal_shapes_and_dtypes(new, state)
        assert reward == 1.0 and not terminated
        assert bool(truncated) == (t == 3)
        if t < 3:
            np.testing.assert_array_equal(obs, info["final_observation"])
            assert int(new.time) == t
        state = new
    # the episode's last observation is kept; the next one starts afresh with the step's key
    assert not np.allclose(obs, info["final_observation"])
    fresh, _ = reset(key, params)
    np.testing.assert_array_equal(obs, fresh)
    assert not np.allclose(obs, obs0)
    assert int(state.time) == 0


def test_a_fall_terminates_and_is_not_truncated(pendulum):
    env, params, reset, step = pendulum
    params = params.replace(max_steps_in_episode=1000)
    _, state = reset(jax.random.key(1), params)
    push = jnp.ones((1,))  # the cart pushed one way: the pole falls the other
    for t in range(100):
        key = jax.random.key(t)
        obs, state, _, terminated, truncated, info = step(key, state, push, params)
        if terminated:
            break
    assert terminated and not truncated and 0 < t < 99
    assert abs(float(info["final_observation"][1])) > 0.2  # the pole's angle past the limit
    np.testing.assert_array_equal(obs, reset(key, params)[0])
    assert int(state.time) == 0


# TD3 on the pendulum (brax's physics); DDPG and SAC on brax's own test task `fast` (a
# point pushed along a line), through the same adapter at a small part of the compile time.
@pytest.mark.parametrize("algo, name", [("td3", NAME), ("ddpg", "brax:fast"), ("sac", "brax:fast")])
def test_actor_critic_agents_train_on_a_brax_task(algo, name, tmp_path):
    out = tmp_path / algo
    flags = ["--hidden", "8", "--batch-size", "8", "--buffer-size", "64"]
    flags += ["--learning-starts", "8", "--eval-episodes", "1"]
    status = train.main(
        ["--algo", algo, "--env", name, "--seeds", "2", "--total-steps", "16", "--segments", "1"]
        + ["--no-progress", "--out", str(out), *flags]
    )
    assert status == 0
    with open(out / "results.json") as f:
        results = json.load(f)
    assert results["status"] == "completed" and results["config"]["env"] == name
    returns = np.asarray(results["final"]["return"], dtype=np.float64)
    assert returns.shape == (1, 2) and np.all(np.isfinite(returns))
    if name == NAME:
        assert np.all(returns >= 1.0)  # reward 1 per step upright


@pytest.mark.parametrize(
    "args, says",
    [
        (["--algo", "td3", "--env", "brax:nope"], "unknown brax environment 'nope'"),
        (["--algo", "dqn", "--env", NAME], f"--env {NAME}: dqn needs a discrete action space"),
    ],
)
def test_bad_brax_input_is_one_line_and_exit_status_2(args, says, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", *args, "--cpu-layout", "default"]
        + ["--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("python -m benchmarks.train: error: ")
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not proc.stdout and not out.exists()
