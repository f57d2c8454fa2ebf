"""Pieces the agents share (environments, replay, episodes) and the training entry point."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import envs, replay

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_unknown_environment_lists_the_registered_ones():
    with pytest.raises(
        ValueError, match="unknown environment 'Cartpole'.*CartPole-v1, Pendulum-v1"
    ):
        envs.make("Cartpole")
    env, params = envs.make("Pendulum-v1")
    low, high = envs.action_bounds(env, params, "Pendulum-v1", "td3")
    np.testing.assert_array_equal(low, [-2.0])
    np.testing.assert_array_equal(high, [2.0])
    with pytest.raises(ValueError, match="dqn needs a discrete action space"):
        envs.num_actions(env, params, "Pendulum-v1", "dqn")


@pytest.mark.parametrize("capacity", [6, 5])  # contiguous writes, and writes that wrap
def test_ring_buffer_keeps_the_latest_items_and_samples_only_stored_ones(capacity):
    buf = replay.init({"x": jnp.zeros((), jnp.int32)}, capacity)
    add = jax.jit(replay.add)
    for start in range(0, 8, 2):
        buf = add(buf, {"x": jnp.arange(start, start + 2, dtype=jnp.int32)})
        stored = min(start + 2, capacity)
        assert int(buf.size.value) == stored
        assert int(buf.position.value) == (start + 2) % capacity
        sample = replay.sample(buf, jax.random.key(start), 256)["x"]
        assert set(np.asarray(sample).tolist()) == set(range(start + 2 - stored, start + 2))
    assert sorted(np.asarray(buf.data["x"]).tolist()) == list(range(8 - capacity, 8))


def test_episode_returns_are_carried_until_an_episode_ends():
    ep = envs.episodes_init(2)
    assert float(envs.episodes_metrics(ep)["episode_return"]) == 0.0  # none finished: 0
    ep = envs.episodes_update(ep, jnp.array([1.0, 2.0]), jnp.array([False, True]))
    ep = envs.episodes_update(ep, jnp.array([1.0, 5.0]), jnp.array([True, False]))
    m = envs.episodes_metrics(ep)
    assert float(m["episode_return"]) == pytest.approx((2.0 + 2.0) / 2)
    assert float(m["episodes"]) == 2
    np.testing.assert_allclose(ep.running, [0.0, 5.0])


def test_train_cli_writes_final_return_and_throughput(tmp_path):
    # Two CPU devices: the harness splits the grid (2 seeds x 2 taus) across them.
    env = dict(os.environ)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    out = tmp_path / "ddpg"
    cmd = [
        sys.executable, "-m", "benchmarks.train", "--algo", "ddpg", "--env", "Pendulum-v1",
        "--seeds", "2", "--seed", "3", "--total-steps", "300", "--out", str(out),
        "--sweep", "tau=0.01,0.1", "--segments", "2", "--no-progress",
        "--hidden", "16", "--batch-size", "16", "--learning-starts", "100",
        "--eval-episodes", "2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads((out / "results.json").read_text())
    assert r["algo"] == "ddpg" and r["seeds"] == [3, 4] and r["devices"] == 2
    assert np.shape(r["final"]["return"]) == (2, 2)  # [sweep point][seed]
    assert all(-2000 < v < 0 for point in r["final"]["return"] for v in point)
    assert r["env_steps"] == 300 and r["env_steps_per_second"] > 0
    assert r["compile_seconds"] > 0 and r["run_seconds"] > 0
    assert r["config"]["hidden"] == [16] and r["config"]["num_critics"] == 1


def test_rl_studies_flags_rebuild_each_variants_config():
    import tyro

    from benchmarks import rl_studies

    variants = [v for study in rl_studies.studies().values() for v in study.values()]
    for variant in variants:
        cls = type(variant.config)
        flags = rl_studies.config_flags(variant.config)
        assert tyro.cli(cls, args=flags, default=cls()) == variant.config, variant
    args = rl_studies.train_args(rl_studies.studies()["dqn_targets"]["ema"])
    assert args == ["--algo", "dqn", "--target", "ema", "--sweep", "tau=0.005,0.05"]
