"""Every gymnax environment with every registered RL algorithm, through the real entry point.

A pairing whose action space fits the algorithm (discrete: dqn; a bounded box: ddpg, td3,
sac) trains a few steps with `python -m benchmarks.train`'s `main`; any other pairing
stops with one line naming the flag and value, and exit status 2, before anything
compiles. MNISTBandit-bsuite reads MNIST when gymnax builds it: the tests write a few
images in MNIST's file format to a temporary directory; without them and without a
network it refuses in one line. Then the observation encoders: one-hot, the MinAtar
convolution chosen for images, and the `network` override.
"""

from __future__ import annotations

import array
import functools
import gzip
import json
import os
import struct
import subprocess
import sys

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from gymnax.utils import load_mnist

import agents
from agents import dqn, envs, networks, sac, td3
from benchmarks import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGOS = sorted(agents.ALGORITHMS)
ENVS = list(gymnax.registered_envs)
CONTINUOUS = ("ddpg", "sac", "td3")

# tiny runs: 8 env steps, learning from the 4th, one segment, one evaluation episode
TINY = ["--seeds", "1", "--total-steps", "8", "--segments", "1", "--host-loop"]
TINY_ALGO = {
    "dqn": ["--learning-starts", "4", "--epsilon-steps", "4", "--target-every", "4"],
    **{
        a: ["--learning-starts", "4", "--buffer-size", "16", "--batch-size", "4", "--hidden", "8"]
        for a in CONTINUOUS
    },
}
COMMON = ["--no-progress", "--cpu-layout", "default", "--eval-episodes", "1"]


def write_mnist(directory, count: int = 12) -> None:
    """`count` random 28 x 28 images and labels in MNIST's gzipped IDX format, under the
    four file names gymnax reads."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, count, dtype=np.uint8)
    for split in ("train", "t10k"):
        with gzip.open(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes())
        with gzip.open(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">II", 2049, count) + array.array("B", labels).tobytes())


def no_network(url, filename):
    raise OSError(f"no network here to fetch {url}")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mnist")
    write_mnist(str(directory))
    return str(directory)


@pytest.fixture
def local_mnist(monkeypatch, mnist_dir):
    """gymnax's MNIST loader reads the local files and never downloads."""
    monkeypatch.setattr(load_mnist, "urlretrieve", no_network)
    original = load_mnist.load_mnist
    monkeypatch.setattr(load_mnist, "load_mnist", functools.partial(original, mnist_dir))


@functools.cache
def discrete_actions(name: str) -> bool:
    env, params = envs.make(name)
    return isinstance(env.action_space(params), spaces.Discrete)


def fits(name: str, algo: str) -> bool:
    return discrete_actions(name) == (algo == "dqn")


def run_train(algo: str, name: str, out, capsys) -> tuple[int, str]:
    """`benchmarks.train.main` in this process: (exit status, stderr)."""
    preset = [] if algo == "ddpg" else ["--preset", "smoke"]
    args = ["--algo", algo, *preset, "--env", name, *TINY, *TINY_ALGO[algo], *COMMON]
    args += ["--out", str(out)]
    try:
        status = train.main(args)
    except SystemExit as stop:
        status = stop.code
    return status, capsys.readouterr().err


def check_refused(status: int, err: str, name: str) -> None:
    assert status == 2, err[-2000:]
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m benchmarks.train: error: "), err
    assert f"--env {name}" in lines[0]


def harness_tiny(algo: str, name: str):
    """A few steps of `algo` on `name` through the harness (one vmapped step per call, no
    files): what `benchmarks.train` runs, at the smallest compile cost."""
    from benchmarks import algorithm, harness

    entry = algorithm.load(algo)
    config = entry.module.PRESETS["smoke"] if algo != "ddpg" else entry.config
    tiny = dict(learning_starts=4, eval_episodes=1, env=name)
    if algo == "dqn":
        tiny.update(epsilon_steps=4, target_every=4)
    else:
        tiny.update(buffer_size=16, batch_size=4, hidden=(8,))
    config = config.replace(**tiny)
    _, per_step = harness.units(entry.module, config)
    return harness.run(
        entry.module,
        config,
        iterations=max(2, 8 // per_step),
        segment_length=max(2, 8 // per_step),
        out_dir=None,
        progress=False,
        plot=False,
        scan=False,
        name=algo,
    )


# The environments whose step compiles slowest (seconds each, on top of the agent): their
# fitting pairs are marked slow, to deselect with -m "not slow" when time is short.
SLOW_COMPILE = {f"{g}-MinAtar" for g in ("Asterix", "Freeway", "Seaquest", "SpaceInvaders")}
SLOW_COMPILE |= {"PointRobot-misc", "Reacher-misc", "Swimmer-misc"}


def _param(name: str, algo: str):
    slow = name in SLOW_COMPILE and fits(name, algo)
    return pytest.param(name, algo, id=f"{algo}-{name}", marks=[pytest.mark.slow] if slow else [])


PAIRS = [(n, a) for n in ENVS for a in ALGOS]
# through `benchmarks.train.main` (files, checks and all); the rest through the harness
ENTRY_POINT = {("CartPole-v1", "dqn"), ("Pendulum-v1", "ddpg"), ("PointRobot-misc", "sac")}
ENTRY_POINT |= {("MountainCarContinuous-v0", "td3"), ("FrozenLake-misc", "dqn")}


@pytest.mark.parametrize("name, algo", [_param(n, a) for n, a in PAIRS])
def test_every_environment_trains_or_refuses_in_one_line(name, algo, tmp_path, capsys, local_mnist):
    out = tmp_path / "run"
    if not fits(name, algo):
        status, err = run_train(algo, name, out, capsys)
        check_refused(status, err, name)
        needs = "discrete action space" if algo == "dqn" else "continuous (Box) action space"
        assert f"{algo} needs a {needs}" in err  # named as asked: ddpg, not td3
        assert not out.exists()
        return
    loss = "loss" if algo == "dqn" else "critic_loss"
    if (name, algo) in ENTRY_POINT:
        status, err = run_train(algo, name, out, capsys)
        assert status == 0, err[-3000:]
        results = json.loads((out / "results.json").read_text())
        final, env_steps = results["final"]["return"], results["env_steps"]
        losses = [r["train"][loss] for r in harness_log(out)]
    else:
        result = harness_tiny(algo, name)
        results = result.results
        final, env_steps = results["final"]["return"], results["env_steps"]
        losses = [v for row in results["final_train"][loss] for v in row]
    assert results["status"] == "completed" and env_steps >= 8
    assert np.all(np.isfinite(np.asarray(final, dtype=float)))
    assert losses and np.all(np.isfinite(losses))


def harness_log(out) -> list[dict]:
    from benchmarks import harness

    return [r for r in harness.read_log(out) if "train" in r]


def test_mnist_bandit_without_its_files_refuses_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(load_mnist, "urlretrieve", no_network)
    original = load_mnist.load_mnist
    monkeypatch.setattr(load_mnist, "load_mnist", functools.partial(original, str(tmp_path)))
    dqn._setup.cache_clear()  # the setup of the same config may hold the local files' env
    status, err = run_train("dqn", "MNISTBandit-bsuite", tmp_path / "run", capsys)
    check_refused(status, err, "MNISTBandit-bsuite")
    assert "MNIST files" in err and "/tmp/mnist" in err


def test_a_minatar_game_trains_through_the_command(tmp_path):
    # the command of the issue that stopped in "Computation compiled for 67 inputs"
    out = tmp_path / "breakout"
    args = ["--algo", "dqn", "--preset", "smoke", "--env", "Breakout-MinAtar", *TINY[2:]]
    args += [*TINY_ALGO["dqn"], *COMMON]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", *args, "--seeds", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed" and len(results["seeds"]) == 2


# --------------------------------------------------------------------------- setups


def test_a_setup_built_while_tracing_holds_no_tracer():
    # The first setup of a config is often built inside jit: what it caches must be
    # concrete (Acrobot's params are arrays computed with jnp).
    config = dqn.PRESETS["smoke"].replace(env="Acrobot-v1", hidden=(5,))
    jax.jit(dqn.init, static_argnums=1)(jax.random.key(0), config)
    s = dqn._setup(dqn.offpolicy.static(config))
    envs.check_concrete("Acrobot-v1", s)
    state = dqn.init(jax.random.key(1), config)  # outside any trace: the cached setup
    assert bool(jnp.all(jnp.isfinite(state.obs)))


def test_check_concrete_finds_a_tracer_in_an_object():
    class Holder:
        def __init__(self, value):
            self.value = value

    envs.check_concrete("x", Holder(jnp.ones(2)), {"a": np.ones(2)})

    def leak(x):
        with pytest.raises(ValueError, match="holds values traced inside a jit"):
            envs.check_concrete("x", Holder(x))
        return x

    jax.jit(leak)(jnp.ones(2))


# --------------------------------------------------------------------------- encoders


def test_a_discrete_observation_is_one_hot():
    env, params = envs.make("FrozenLake-misc")
    assert envs.observation_shape(env, params, "FrozenLake-misc") == (16,)
    obs, _ = envs.reset(env, params, jax.random.key(0), 3)
    assert obs.shape == (3, 16) and obs.dtype == jnp.float32
    np.testing.assert_array_equal(np.sum(obs, axis=-1), 1.0)
    raw, _ = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.key(0), 3), params)
    np.testing.assert_array_equal(np.argmax(obs, axis=-1), raw)


@pytest.mark.parametrize(
    "name, shape",
    [("Breakout-MinAtar", (10, 10, 4)), ("Catch-bsuite", (50,)), ("CartPole-v1", (4,))],
)
def test_images_keep_their_shape_and_other_arrays_are_flattened(name, shape):
    env, params = envs.make(name)
    assert envs.observation_shape(env, params, name) == shape
    obs, _ = envs.reset(env, params, jax.random.key(0), 2)
    assert obs.shape == (2, *shape) and obs.dtype == jnp.float32


def test_the_torso_is_chosen_from_the_observation_shape():
    assert networks.torso("auto", (10, 10, 4)) == "conv"
    assert networks.torso("auto", (4,)) == "mlp"
    assert networks.torso("mlp", (10, 10, 4)) == "mlp"
    assert networks.torso("conv", (10, 10, 7)) == "conv"
    with pytest.raises(ValueError, match="network='conv' needs image observations"):
        networks.torso("conv", (4,), "CartPole-v1")
    with pytest.raises(ValueError, match="network must be"):
        networks.torso("cnn", (4,))


def test_minatar_dqn_gets_the_papers_network():
    config = dqn.PRESETS["smoke"].replace(env="Breakout-MinAtar", hidden=(128,))
    s = dqn._setup(dqn.offpolicy.static(config))
    params = s.network.init(jax.random.key(0), jnp.zeros(s.obs_shape))
    shapes = jax.tree.map(jnp.shape, params["params"])
    # Young & Tian 2019: 3x3 conv of 16 filters (no padding: 8 x 8 x 16), dense 128, out
    assert shapes["Conv"]["kernel"] == (3, 3, 4, 16)
    assert shapes["Dense_0"]["kernel"] == (8 * 8 * 16, 128)
    assert shapes["Dense_1"]["kernel"] == (128, s.num_actions)
    q = s.network.apply(params, jnp.zeros((5, *s.obs_shape)))
    assert q.shape == (5, s.num_actions)
    # the override: an MLP on the flattened image
    mlp = dqn._setup(dqn.offpolicy.static(config.replace(network="mlp")))
    params = mlp.network.init(jax.random.key(0), jnp.zeros(mlp.obs_shape))
    assert "Conv" not in params["params"]
    assert params["params"]["Dense_0"]["kernel"].shape == (400, 128)
    assert mlp.network.apply(params, jnp.zeros((5, 10, 10, 4))).shape == (5, s.num_actions)


def test_the_minatar_torso_is_a_valid_3x3_convolution():
    torso = networks.MinAtarTorso()
    x = jax.random.uniform(jax.random.key(0), (5, 10, 10, 4))
    params = torso.init(jax.random.key(1), x[0])
    kernel = params["params"]["kernel"]
    bias = jax.random.normal(jax.random.key(2), (16,))
    y = torso.apply({"params": {"kernel": kernel, "bias": bias}}, x)
    conv = jax.lax.conv_general_dilated(
        x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    expected = jax.nn.relu(conv + bias[None, None, None, :]).reshape(5, -1)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert torso.apply(params, x[0]).shape == (8 * 8 * 16,)  # one observation


def test_conv_on_vector_observations_is_refused():
    with pytest.raises(ValueError, match="network='conv' needs image observations"):
        dqn.check(dqn.PRESETS["smoke"].replace(network="conv"))
    with pytest.raises(ValueError, match="network='conv' needs image observations"):
        td3.check(td3.PRESETS["smoke"].replace(network="conv"))


@pytest.mark.parametrize("module", [td3, sac])
def test_actor_critic_networks_read_images_through_the_conv_torso(module):
    # no gymnax task has images and continuous actions: the networks alone
    reads = {"obs_ndim": 3, "conv": True}
    center, scale = np.zeros(2, np.float32), np.ones(2, np.float32)
    actor = module._actor(module.PRESETS["smoke"], center, scale, reads)
    critic = networks.Critic(hidden=(8,), **reads)
    obs, action = jnp.zeros((3, 10, 10, 4)), jnp.zeros((3, 2))
    actor_params = actor.init(jax.random.key(0), obs[0])
    critic_params = critic.init(jax.random.key(1), obs[0], action[0])
    assert "Conv" in actor_params["params"] and "Conv" in critic_params["params"]
    out = actor.apply(actor_params, obs)
    out = out if module is td3 else out[0]
    assert out.shape == (3, 2)
    assert critic.apply(critic_params, obs, action).shape == (3,)


# --------------------------------------------------------------------------- the carry


def test_a_step_that_changes_its_state_types_is_named():
    from benchmarks.harness.program import canonical, check_carry

    before = {"a": jnp.zeros(3), "b": jnp.zeros((), jnp.int32)}
    check_carry(before, jax.eval_shape(lambda s: s, before), "algo")
    with pytest.raises(ValueError, match=r"\['b'\]: int32\[\] -> float32\[\]"):
        check_carry(before, {"a": jnp.zeros(3), "b": jnp.zeros(())}, "algo")
    with pytest.raises(ValueError, match="another structure"):
        check_carry(before, {"a": jnp.zeros(3)}, "algo")
    weak = jax.jit(lambda: {"t": jnp.asarray(0) + 1})()["t"]
    assert jax.typeof(weak).weak_type
    strong = jax.jit(canonical)({"t": weak})["t"]
    assert not jax.typeof(strong).weak_type and strong.dtype == weak.dtype
