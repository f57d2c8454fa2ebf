"""The compiled program of a run: `init` / `step` / `evaluate` vmapped over the grid, a
segment of steps scanned, the grid optionally run a chunk at a time, and split across
devices with `jax.shard_map`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import stabilizers

GRID_AXIS = "grid"
EVAL_STREAM = 0x5EED  # fold_in tag separating evaluation keys from training keys


def _is_none(x: Any) -> bool:
    return x is None


def _eval_key(key: jax.Array, count: int) -> jax.Array:
    return jax.random.fold_in(jax.random.fold_in(key, EVAL_STREAM), count)


_eval_keys = jax.vmap(_eval_key, in_axes=(0, None))  # the grid's keys, one count


def tree_all_finite(tree: Any) -> jax.Array:
    """True when every float leaf of `tree` is finite."""
    oks = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(oks)) if oks else jnp.array(True)


def canonical(tree: Any) -> Any:
    """`tree` with weak types made strong (`x + 1` where `x` is a Python int is weakly
    typed), so that a run's state has the same types before its first step as after."""

    def strong(x):
        if isinstance(x, jax.Array) and getattr(jax.typeof(x), "weak_type", False):
            return jax.lax.convert_element_type(x, x.dtype)
        return x

    return jax.tree.map(strong, tree)


def check_carry(before: Any, after: Any, what: str) -> None:
    """Raises a ValueError when a step's output state (`after`: arrays or their shapes)
    differs from its input (`before`) in structure, shape or dtype: a compiled segment
    must be called with the pytree it was compiled for, and the state of one step is
    the input of the next."""
    before_leaves, before_tree = jax.tree_util.tree_flatten_with_path(before)
    after_leaves, after_tree = jax.tree_util.tree_flatten_with_path(after)
    if before_tree != after_tree:
        raise ValueError(
            f"{what}: step returns a state of another structure than it takes "
            f"({len(after_leaves)} leaves, {len(before_leaves)} in); make the state's fields "
            "the same pytree after every step"
        )
    differ = [
        f"{jax.tree_util.keystr(path)}: {x.dtype}{list(x.shape)} -> {y.dtype}{list(y.shape)}"
        for (path, x), (_, y) in zip(before_leaves, after_leaves, strict=True)
        if (x.shape, x.dtype) != (y.shape, y.dtype)
    ]
    if differ:
        raise ValueError(
            f"{what}: step changes the shape or dtype of its state, at "
            + "; ".join(differ[:5])
            + (f" (and {len(differ) - 5} more)" if len(differ) > 5 else "")
        )


def device_layout(
    grid_size: int, seed_chunk: int | None, max_devices: int | None, echo: Callable[[str], None]
) -> tuple[list, int | None]:
    """The devices the grid is split over, and the chunk size in effect on each.

    The grid is split over the most devices (at most `max_devices`) that divide it; with
    several processes, over every device of every process. The chunk is None where a
    device holds no more than one chunk.
    """
    devices = jax.devices()
    if jax.process_count() > 1:
        if grid_size % len(devices) or max_devices not in (None, len(devices)):
            raise ValueError(
                f"with {jax.process_count()} processes the grid is split over all "
                f"{len(devices)} devices: its {grid_size} points (seeds x sweep points) must "
                "be a multiple of that"
            )
    elif max_devices is not None:
        devices = devices[:max_devices]
    n_dev = max(d for d in range(1, len(devices) + 1) if grid_size % d == 0)
    if n_dev < len(devices):
        echo(f"[harness] grid of {grid_size} split over {n_dev} of {len(devices)} devices")
    local = grid_size // n_dev
    chunk = seed_chunk if seed_chunk is not None and local > seed_chunk else None
    if chunk is not None and local % chunk:
        raise ValueError(
            f"seed_chunk={seed_chunk} does not divide the {local} grid points of each of "
            f"{n_dev} device(s) ({grid_size} in all); choose a divisor of {local}"
        )
    return devices[:n_dev], chunk


class Program:
    """One run's programs over the grid: init, a segment of each length, evaluation.

    Args:
      algo: the algorithm module.
      config: its `Config` (unbatched).
      grid: the `Grid` of seeds x sweep points.
      scan: run a segment under `lax.scan` (else one jitted step per iteration).
      seed_chunk: vmap at most this many grid points at a time on each device.
      max_devices: use at most this many devices.
      echo: prints a message of the lead process.

    Attributes:
      num_devices: the devices the grid is split over.
      chunk: the seed chunk in effect (None: all of a device's points at once).
      config: the grid's batched config, placed on the devices.
    """

    def __init__(
        self,
        algo,
        config,
        grid,
        *,
        scan=True,
        seed_chunk=None,
        max_devices=None,
        echo: Callable[[str], None] = print,
    ):
        self.algo, self.grid, self.scan = algo, grid, scan
        self.keys = jnp.stack([jax.random.key(s) for s in grid.grid_seeds])
        self.axes = stabilizers.seed_axes(jax.eval_shape(algo.init, self.keys[0], config))
        self._init = jax.vmap(algo.init, in_axes=(0, grid.axes), out_axes=self.axes)
        self._step = jax.vmap(algo.step, in_axes=(self.axes, grid.axes), out_axes=(self.axes, 0))
        self._evaluate = jax.vmap(algo.evaluate, in_axes=(self.axes, grid.axes, 0), out_axes=0)
        self._finite = jax.vmap(tree_all_finite, in_axes=(self.axes,))

        devices, self.chunk = device_layout(grid.size, seed_chunk, max_devices, echo)
        self.num_devices = len(devices)
        self.local = grid.size // self.num_devices
        self.mesh = Mesh(np.asarray(devices), (GRID_AXIS,)) if len(devices) > 1 else None
        spec = lambda a: P() if a is None else P(GRID_AXIS)  # noqa: E731
        self.state_specs = jax.tree.map(spec, self.axes, is_leaf=_is_none)
        self.cfg_specs = jax.tree.map(spec, grid.axes, is_leaf=_is_none)
        self.config = self.place(grid.config, self.cfg_specs)
        self._segments: dict[int, Any] = {}
        self._eval: Any = None

    # ---- devices

    def shard(self, f, in_specs, out_specs):
        """`f` as a `shard_map` over the grid axis (itself on one device)."""
        if self.mesh is None:
            return f
        # Devices never communicate, so shard_map's varying-axes type check has nothing to
        # protect; it would reject a scan whose carry starts from constants (an evaluation
        # rollout) and becomes device-varying.
        return jax.shard_map(
            f, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
        )

    def place(self, tree, specs):
        """`tree` put on the devices, split along the grid axis where `specs` say so."""
        if self.mesh is None:
            return tree
        if jax.process_count() > 1:
            # as jax.Arrays (Python scalars keep their weak type): device_put's check that
            # every process passes the same value compares a float64 value with its gathered
            # float32 copies, and fails
            tree = jax.tree.map(lambda x: x if isinstance(x, jax.Array) else jnp.asarray(x), tree)
        shardings = jax.tree.map(lambda s: NamedSharding(self.mesh, s), specs)
        return jax.device_put(tree, shardings)

    # ---- init

    def computed(self, f, specs, *args):
        """`f(*args)` placed on the devices as `specs` say; with several processes, jitted
        so that each process computes its own devices' part."""
        if jax.process_count() > 1:
            shardings = jax.tree.map(lambda s: NamedSharding(self.mesh, s), specs)
            return jax.jit(f, out_shardings=shardings)(*args)
        return self.place(f(*args), specs)

    def init(self):
        """The initial states of the grid (`canonical` types), placed on the devices."""
        init = jax.jit(lambda keys, cfg: canonical(self._init(keys, cfg)))
        return self.computed(init, self.state_specs, self.keys, self.grid.config)

    # ---- segments

    def _whole_segment(self, states, cfg, length):
        states, metrics = jax.lax.scan(lambda s, _: self._step(s, cfg), states, None, length=length)
        return states, metrics, self._finite(states)

    def _chunked_segment(self, states, cfg, length):
        """This device's grid points, `chunk` at a time (`lax.map` over chunks)."""
        chunk, local = self.chunk, self.local
        chunks = local // chunk

        def split(tree, tree_axes):  # batched leaves -> [chunks, chunk, ...]
            return jax.tree.map(
                lambda a, x: None if a is None else x.reshape(chunks, chunk, *x.shape[1:]),
                tree_axes,
                tree,
                is_leaf=_is_none,
            )

        def merge(tree_axes, whole, part):  # shared leaves (axis None) from the whole tree
            return jax.tree.map(
                lambda a, x, c: x if a is None else c, tree_axes, whole, part, is_leaf=_is_none
            )

        def one_chunk(xs):
            s_chunk, c_chunk = xs
            return self._whole_segment(
                merge(self.axes, states, s_chunk), merge(self.grid.axes, cfg, c_chunk), length
            )

        out, metrics, finite = jax.lax.map(
            one_chunk, (split(states, self.axes), split(cfg, self.grid.axes))
        )
        # batched leaves back to [points, ...]; shared leaves agree across chunks: the first
        first = lambda tree: jax.tree.map(lambda y: y[0], tree)  # noqa: E731
        out = jax.tree.map(
            lambda a, x: first(x) if a is None else x.reshape(local, *x.shape[2:]),
            self.axes,
            out,
            is_leaf=_is_none,
        )
        metrics = jax.tree.map(
            lambda m: jnp.swapaxes(m, 0, 1).reshape(length, local, *m.shape[3:]), metrics
        )
        return out, metrics, finite.reshape(local)

    def _one_step(self, states, cfg):
        # no lax.scan, not even of length 1: XLA keeps the loop, and the slow convolution
        states, metrics = self._step(states, cfg)
        metrics = jax.tree.map(lambda m: m[None], metrics)
        return states, metrics, self._finite(states)

    def _segment_program(self, length: int):
        out_specs = (self.state_specs, P(None, GRID_AXIS), P(GRID_AXIS))
        in_specs = (self.state_specs, self.cfg_specs)
        if not self.scan:
            return HostLoop(jax.jit(self.shard(self._one_step, in_specs, out_specs)), length)
        segment = self._whole_segment if self.chunk is None else self._chunked_segment
        body = lambda s, c: segment(s, c, length)  # noqa: E731
        return jax.jit(self.shard(body, in_specs, out_specs))

    # ---- evaluation

    def eval_keys(self, segment_index: int):
        """The evaluation key of each grid point after segment `segment_index` (-1: before)."""
        return self.computed(_eval_keys, P(GRID_AXIS), self.keys, segment_index + 1)

    # ---- compiled

    def compile(self, lengths: Sequence[int], states) -> None:
        """Compiles a segment program for each of `lengths`, and the evaluation."""
        for length in sorted(set(lengths)):
            lowered = self._segment_program(length).lower(states, self.config)
            check_carry(states, lowered.out_info[0], getattr(self.algo, "__name__", "algo"))
            self._segments[length] = lowered.compile()
        in_specs = (self.state_specs, self.cfg_specs, P(GRID_AXIS))
        evaluate = jax.jit(self.shard(self._evaluate, in_specs, P(GRID_AXIS)))
        self._eval = evaluate.lower(states, self.config, self.eval_keys(0)).compile()

    def segment(self, states, length: int):
        """Runs `length` steps: `(states, metrics [length, G], finite [G])`."""
        return self._segments[length](states, self.config)

    def evaluate(self, states, segment_index: int) -> dict[str, np.ndarray]:
        """The evaluation metrics of every grid point after segment `segment_index`."""
        return self.fetch(self._eval(states, self.config, self.eval_keys(segment_index)))

    def fetch(self, tree):
        """`tree`'s arrays as numpy arrays of the whole grid, on every process (gathered
        from the other processes' devices when there are several)."""
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            tree = multihost_utils.process_allgather(tree, tiled=True)
        return jax.tree.map(np.asarray, jax.device_get(tree))


class HostLoop:
    """A segment as `length` calls of a one-step program (the `scan=False` path)."""

    def __init__(self, one_step, length: int):
        self.one_step, self.length = one_step, length

    def lower(self, *args):
        self._lowered = self.one_step.lower(*args)
        self.out_info = self._lowered.out_info
        return self

    def compile(self):
        self.one_step = self._lowered.compile()
        return self

    def __call__(self, states, cfg):
        metrics, finite = [], None
        for _ in range(self.length):
            states, m, f = self.one_step(states, cfg)
            metrics.append(m)
            finite = f if finite is None else finite & f
        stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *metrics)
        return states, stacked, finite
