"""Every registered algorithm keeps the contract, checked through the harness.

The cases are the names of `benchmarks.algorithm.registry()`: a new registry line is
picked up with no edit here. Each algorithm runs its `PRESETS["smoke"]` config for two
harness segments, and the checks are:

- the module satisfies `benchmarks.algorithm.Algorithm`;
- two segments of two seeds complete, each logged and checkpointed;
- stopped after one segment (`stop_after_segments=1`) and resumed, the run ends bit for
  bit where the uninterrupted run ends;
- a metric made NaN at a chosen iteration stops the run in that segment, keeping the
  checkpoint of the segment before and returning its state;
- that run sweeps the first float field of the config over its own value twice: both
  points equal, bit for bit, the unswept run's first seed at the same iteration;
- on two forced host devices the swept run of two seeds matches the one-device run to
  float rounding.

Compared runs hold the same number of grid points per device: XLA may pick other kernels
for another vmap width, and an optimizer such as Adam can turn that rounding into visible
differences within a few steps.

A `"module:preset"` alias (e.g. `"ddpg": "agents.td3:ddpg"`) runs its own preset with the
sizes its module's smoke preset sets: every static int (or tuple of ints) field where the
smoke preset differs from the default `Config`, nested config dataclasses included. Its
choices (strings, flags) and float hyperparameters stay the alias's own.

To fit the budget (about 3 minutes on 2 CPU cores), a subprocess with two forced host
devices does each algorithm's NaN run and two-device run while this process does the
uninterrupted, interrupted and resumed runs, and a persistent compilation cache lets the
last two reuse the first's programs (programs with host callbacks, the SSL data reads,
compile each time).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import types
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache

import stabilizers
from benchmarks import algorithm, harness
from benchmarks.harness import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = sorted(algorithm.registry())
# two devices against one: float rounding, grown over a few hundred steps of the smoke runs
RTOL, ATOL = 1e-3, 1e-5


# --------------------------------------------------------------------------- the plan


def smoke_sized(config: Any, smoke: Any, default: Any, *, nested: bool = False) -> Any:
    """`config` with the sizes (static int fields) that `smoke` sets apart from `default`.

    In a nested (static) dataclass every field counts as static.
    """
    sizes = {}
    for f in dataclasses.fields(config):
        if not nested and f.metadata.get("pytree_node", True):
            continue
        value, base = getattr(smoke, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            sizes[f.name] = smoke_sized(getattr(config, f.name), value, base, nested=True)
        elif value != base and _is_size(value):
            sizes[f.name] = value
    return dataclasses.replace(config, **sizes)


def _is_size(value: Any) -> bool:
    ints = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    return ints(value) or (isinstance(value, tuple) and all(map(ints, value)))


def conformance_config(entry: algorithm.Entry) -> Any:
    """The smoke preset, or for an alias its own preset at the smoke preset's sizes."""
    presets = entry.module.PRESETS
    if entry.preset is None:
        return presets["smoke"]
    return smoke_sized(entry.config, presets["smoke"], entry.module.Config())


class Plan(NamedTuple):
    """What the conformance runs of one algorithm share."""

    entry: algorithm.Entry
    config: Any
    segment: int  # iterations per segment; a run is two segments
    field: str  # the swept float field
    value: float  # its value in `config`

    def run(self, algo=None, **kw) -> harness.Result:
        """Two segments of two seeds (or of `kw`), on one device, no files by default."""
        kw = {"seeds": 2, "progress": False, "plot": False, "max_devices": 1, **kw}
        return harness.run(
            algo or self.entry.module,
            self.config,
            iterations=2 * self.segment,
            segment_length=self.segment,
            checkpoint_every=1,
            name=self.entry.name,
            **kw,
        )

    def swept(self, algo=None, **kw) -> harness.Result:
        """Two segments of one seed at two sweep points, both the config's own value."""
        sweep = {self.field: [self.value, self.value]}
        return self.run(algo, **{"seeds": 1, "sweep": sweep, **kw})


def plan(name: str) -> Plan:
    """The conformance plan of `name`: its config's `total_steps` (20 iterations when it
    has none) in two segments, sweeping its first float field."""
    entry = algorithm.load(name)
    config = conformance_config(entry)
    total = getattr(config, "total_steps", None)
    per_iteration = harness.units(entry.module, config)[1]
    iterations = math.ceil(total / per_iteration) if total else 20
    field = next(
        (
            f.name
            for f in dataclasses.fields(config)
            if f.metadata.get("pytree_node", True) and type(getattr(config, f.name)) is float
        ),
        None,
    )
    assert field is not None, f"{name}: Config has no float hyperparameter to sweep"
    return Plan(entry, config, max(1, iterations // 2), field, getattr(config, field))


# --------------------------------------------------------------------------- NaN at a step


class Counted(NamedTuple):
    """The state of an algorithm wrapped by `nan_at`, with the steps taken."""

    inner: Any
    iteration: jax.Array


def nan_at(module: Any, iteration: int) -> types.SimpleNamespace:
    """`module` whose first float metric is NaN at step `iteration` (1-based) only."""

    def init(key, config):
        return Counted(module.init(key, config), jnp.zeros((), jnp.int32))

    def step(state, config):
        inner, metrics = module.step(state.inner, config)
        count = state.iteration + 1
        name = next(k for k, v in metrics.items() if jnp.issubdtype(v.dtype, jnp.inexact))
        metrics = {**metrics, name: jnp.where(count == iteration, jnp.nan, metrics[name])}
        return Counted(inner, count), metrics

    def evaluate(state, config, key):
        return module.evaluate(state.inner, config, key)

    return types.SimpleNamespace(
        __name__=module.__name__,
        Config=module.Config,
        PRESETS=module.PRESETS,
        init=init,
        step=step,
        evaluate=evaluate,
        units=module.units,
    )


# --------------------------------------------------------------------------- comparisons


def _is_none(x: Any) -> bool:
    return x is None


def point(states: Any, g: int) -> list[np.ndarray]:
    """The leaves of grid point g (shared counters as they are), keys as raw data."""
    states = checkpoints.unwrap_keys(states)
    axes = stabilizers.seed_axes(states)
    picked = jax.tree.map(lambda a, x: x if a is None else x[g], axes, states, is_leaf=_is_none)
    return [np.asarray(x) for x in jax.tree.leaves(picked)]


def assert_equal(a: list, b: list, what: str) -> None:
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"{what}: leaf {i}")


def assert_close(a: list, b: list, what: str) -> None:
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if np.issubdtype(x.dtype, np.inexact):
            np.testing.assert_allclose(x, y, rtol=RTOL, atol=ATOL, err_msg=f"{what}: leaf {i}")
        else:
            np.testing.assert_array_equal(x, y, err_msg=f"{what}: leaf {i}")


def untimed(log: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in log]


def saved_steps(out_dir) -> list[int]:
    return sorted(int(p) for p in os.listdir(os.path.join(out_dir, "checkpoints")) if p.isdigit())


# --------------------------------------------------------------------------- side runs


def side_runs(name: str, out_dir: str) -> dict:
    """The runs of `name` done in the subprocess: the NaN run on one device (with its
    files in `out_dir/name/nan`) and the swept run on two devices. Returns their numbers,
    with their states' leaves in an npz file."""
    p = plan(name)
    nan_dir = os.path.join(out_dir, name, "nan")
    nan = p.swept(nan_at(p.entry.module, p.segment + (p.segment + 1) // 2), out_dir=nan_dir)
    two = p.run(sweep={p.field: [p.value, p.value]}, max_devices=2)
    arrays = {}
    for run, states, count in (("nan", nan.states.inner, 2), ("two", two.states, 4)):
        for g in range(count):
            arrays.update({f"{run}_{g}_{i}": x for i, x in enumerate(point(states, g))})
    path = os.path.join(out_dir, name, "states.npz")
    np.savez(path, **arrays)
    return {
        "name": name,
        "path": path,
        "nan_dir": nan_dir,
        "nan": {k: nan.results[k] for k in ("status", "iterations", "diverged_at_iteration")},
        "two": {k: two.results[k] for k in ("devices", "final")},
    }


def read_points(path: str, run: str, count: int) -> list[list[np.ndarray]]:
    """The leaves of grid points 0..count-1 of one run in an npz file of `side_runs`."""
    with np.load(path) as f:
        sizes = [sum(k.startswith(f"{run}_{g}_") for k in f.files) for g in range(count)]
        return [[f[f"{run}_{g}_{i}"] for i in range(n)] for g, n in enumerate(sizes)]


def serve(out_dir: str) -> None:
    """The subprocess: answers each algorithm name read from stdin with a JSON line of its
    `side_runs` (or of the error that stopped them)."""
    import traceback

    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert len(jax.devices()) == 2, jax.devices()
    for line in sys.stdin:
        name = line.strip()
        try:
            answer = side_runs(name, out_dir)
        except Exception:
            answer = {"name": name, "error": traceback.format_exc()}
        print(json.dumps(answer), flush=True)


class SideRuns:
    """A subprocess with two forced host devices that does the `side_runs` of each
    algorithm it is asked for, while this process does the rest."""

    def __init__(self, out_dir):
        env = dict(os.environ)
        env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
        script = (
            f"import sys; sys.path[:0] = [{ROOT!r}, {os.path.join(ROOT, 'tests')!r}]; "
            f"import test_conformance; test_conformance.serve({str(out_dir)!r})"
        )
        self.stderr = open(os.path.join(out_dir, "stderr.txt"), "w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )

    def request(self, name: str) -> None:
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()

    def answer(self, name: str) -> dict:
        for line in self.proc.stdout:
            answer = json.loads(line)
            if answer["name"] == name:
                assert "error" not in answer, f"{name}: {answer['error']}"
                return answer
        self.stderr.seek(0)
        raise AssertionError(f"the side-run process ended:\n{self.stderr.read()[-3000:]}")

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.stderr.close()


@pytest.fixture(scope="module")
def side(tmp_path_factory):
    runs = SideRuns(tmp_path_factory.mktemp("side_runs"))
    yield runs
    runs.close()


@pytest.fixture(scope="module", autouse=True)
def compilation_cache_dir(tmp_path_factory):
    """A persistent compilation cache for this module: identical programs compile once."""
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    saved = {n: getattr(jax.config, n) for n in names}
    jax.config.update(names[0], str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update(names[1], 0.0)
    compilation_cache.reset_cache()
    yield
    for n, v in saved.items():
        jax.config.update(n, v)
    compilation_cache.reset_cache()


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", NAMES)
def test_registered_module_satisfies_the_protocol(name):
    entry = algorithm.load(name)
    assert isinstance(entry.module, algorithm.Algorithm)
    assert entry.name == name
    assert isinstance(entry.config, entry.module.Config)
    assert isinstance(conformance_config(entry), entry.module.Config)


@pytest.mark.parametrize("name", NAMES)
def test_algorithm_conforms(name, tmp_path, side):
    p = plan(name)
    side.request(name)
    seg = p.segment

    full = p.run(out_dir=tmp_path / "full")  # two segments
    assert full.status == "completed", full.status
    log = harness.read_log(tmp_path / "full")
    assert [r["iteration"] for r in log] == [0, seg, 2 * seg]
    assert full.results["algo"] == name and full.results["iterations"] == 2 * seg
    assert full.results["final"], f"{name}: evaluate returned no metrics"
    assert saved_steps(tmp_path / "full") == [1, 2]

    # resumed after one segment: bit for bit the uninterrupted run
    part = p.run(out_dir=tmp_path / "resumed", stop_after_segments=1)
    assert part.status == "interrupted" and saved_steps(tmp_path / "resumed") == [1]
    resumed = p.run(out_dir=tmp_path / "resumed")
    assert resumed.status == "completed" and resumed.results["iterations_this_call"] == seg
    for g in (0, 1):
        assert_equal(point(resumed.states, g), point(full.states, g), f"{name}: resumed")
    assert untimed(harness.read_log(tmp_path / "resumed")) == untimed(log)

    answer = side.answer(name)
    nan_points = read_points(answer["path"], "nan", 2)
    two_points = read_points(answer["path"], "two", 4)

    # a metric NaN in the second segment: the run stops there, keeps the first segment's
    # checkpoint, and returns the state after the first segment: at both (equal) sweep
    # points, bit for bit the unswept run's seed 0 after its first segment
    nan = answer["nan"]
    assert nan["status"] == "nonfinite", nan["status"]
    assert nan["iterations"] == seg
    assert nan["diverged_at_iteration"] == [[2 * seg], [2 * seg]]
    assert saved_steps(answer["nan_dir"]) == [1]
    for g in (0, 1):
        assert_equal(nan_points[g], point(part.states, 0), f"{name}: sweep point {g}")

    # two devices, each with two points of the grid seeds x (the same value twice)
    two = answer["two"]
    assert two["devices"] == 2
    for g in range(4):
        assert_close(two_points[g], point(full.states, g % 2), f"{name}: two devices, {g}")
    for metric, values in full.results["final"].items():
        np.testing.assert_allclose(
            np.asarray(two["final"][metric], dtype=np.float64),
            np.asarray([values[0], values[0]], dtype=np.float64),
            rtol=RTOL,
            atol=ATOL,
            err_msg=f"{name}: final {metric} on two devices",
        )


# --------------------------------------------------------------------------- the loader


def _fake_module(name: str, **members) -> types.ModuleType:
    from benchmarks import toy

    module = types.ModuleType(name)
    for member in algorithm.MEMBERS:
        setattr(module, member, getattr(toy, member))
    for member, value in members.items():
        if value is None:
            delattr(module, member)
        else:
            setattr(module, member, value)
    return module


def test_loader_rejects_a_module_without_step(monkeypatch):
    monkeypatch.setitem(sys.modules, "stepless", _fake_module("stepless", step=None))
    assert not isinstance(sys.modules["stepless"], algorithm.Algorithm)
    with pytest.raises(TypeError, match="stepless is not an algorithm: it lacks step"):
        algorithm.load("stepless", {"stepless": "stepless"})


def test_loader_names_an_unknown_algorithm_and_a_missing_package(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown algorithm 'dqm'; registered: .*dqn.*toy"):
        algorithm.load("dqm")
    (tmp_path / "needs_missing.py").write_text("import surely_not_installed_pkg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="needs the package 'surely_not_installed_pkg'"):
        algorithm.load("x", {"x": "needs_missing"})
    with pytest.raises(ModuleNotFoundError, match="'no_such_module', which does not exist"):
        algorithm.load("x", {"x": "no_such_module"})


def test_alias_loads_its_preset_at_the_smoke_sizes(monkeypatch):
    from benchmarks import toy

    presets = {
        "smoke": toy.Config(dim=4, batch_size=8),
        "big": toy.Config(dim=64, batch_size=256, target="periodic", learning_rate=0.5),
    }
    monkeypatch.setitem(sys.modules, "aliased", _fake_module("aliased", PRESETS=presets))
    entry = algorithm.load("periodic-toy", {"periodic-toy": "aliased:big"})
    assert (entry.name, entry.preset, entry.config) == ("periodic-toy", "big", presets["big"])
    want = toy.Config(dim=4, batch_size=8, target="periodic", learning_rate=0.5)
    assert conformance_config(entry) == want
    with pytest.raises(ValueError, match="has no 'huge'"):
        algorithm.load("x", {"x": "aliased:huge"})
