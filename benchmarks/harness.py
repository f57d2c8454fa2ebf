"""The one training harness: seeds x sweep in one compiled program, in segments.

An algorithm is a module (or any object) with

- `Config`: a frozen dataclass (`flax.struct.dataclass`); sizes, counts and choices are
  static fields (`pytree_node=False`), float hyperparameters are pytree leaves;
- `init(key, config) -> state`;
- `step(state, config) -> (state, metrics)`: one training iteration, pure; `metrics` is
  a dict of scalars, all finite while training is healthy;
- `evaluate(state, config, key) -> metrics`: a dict of scalars;
- optionally `units(config) -> (name, count)`: what one iteration consumes, for example
  `("env_steps", num_envs)`; the default is `("iterations", 1)`.

`run` vmaps `init` / `step` / `evaluate` over a grid of seeds x sweep values (one compile
for the whole grid; seed `s` gets `jax.random.key(s)` at every sweep point, so sweep
points are compared on common random numbers), runs `step` under `lax.scan` for a segment
at a time, and between segments, outside jit: appends metrics to `log.jsonl`, updates a
progress bar, evaluates, writes an orbax checkpoint every few segments and checks that
everything is finite. A run resumes from its latest checkpoint and ends bit-identical to
one never interrupted. With several devices the grid axis is split across them with
`jax.shard_map` (each device runs its own seeds; nothing is communicated); across hosts,
call `jax.distributed.initialize()` first and the mesh spans every process's devices.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import stabilizers

FORMAT_VERSION = 1
_EVAL_STREAM = 0x5EED  # fold_in tag separating evaluation keys from training keys
_GRID = "grid"


# --------------------------------------------------------------------------- helpers


def jsonable(x: Any) -> Any:
    """Converts configs, arrays and numbers to JSON values (non-finite floats -> None)."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: jsonable(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (jax.Array, np.ndarray, np.generic)):
        return jsonable(np.asarray(x).tolist())
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, (bool, int, str)) or x is None:
        return x
    return repr(x)


def units(algo: Any, config: Any) -> tuple[str, int]:
    """What one `step` consumes: `algo.units(config)` or `("iterations", 1)`."""
    if hasattr(algo, "units"):
        name, count = algo.units(config)
        return str(name), int(count)
    return "iterations", 1


def _pytree_fields(config: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(config) if f.metadata.get("pytree_node", True)]


def sweep_grid(sweep: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """The Cartesian product of a sweep `{field: [values]}` as a list of points."""
    if not sweep:
        return [{}]
    names = list(sweep)
    return [dict(zip(names, vals, strict=True)) for vals in itertools.product(*sweep.values())]


def _check_sweep(config: Any, sweep: Mapping[str, Sequence[Any]]) -> None:
    fields = {f.name: f for f in dataclasses.fields(config)}
    leaves = set(_pytree_fields(config))
    for name, values in sweep.items():
        if name not in fields:
            raise ValueError(
                f"sweep field {name!r} is not a field of {type(config).__name__}; "
                f"fields: {sorted(fields)}"
            )
        if name not in leaves:
            raise ValueError(
                f"sweep field {name!r} is static (a size, count or choice): each value is a "
                "different program. Run one harness call per value instead."
            )
        if isinstance(values, (str, bytes)) or len(values) == 0:
            raise ValueError(
                f"sweep field {name!r} needs a non-empty list of values; got {values!r}"
            )


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _unwrap_keys(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def _rewrap_keys(tree: Any, template: Any) -> Any:
    return jax.tree.map(
        lambda x, t: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
        tree,
        template,
    )


def _tree_all_finite(tree: Any) -> jax.Array:
    oks = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(oks)) if oks else jnp.array(True)


def _nanmean0(v: np.ndarray) -> np.ndarray:
    """Mean over the segment axis, ignoring NaNs; all-NaN columns give NaN, silently."""
    v = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(v)
    count = ok.sum(axis=0)
    total = np.where(ok, v, 0.0).sum(axis=0)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return np.where(np.any(np.isinf(v), axis=0), np.inf, mean)


def _postfix(metric, last_eval, metrics) -> dict[str, str]:
    """The progress bar's postfix: IQM over the grid of the latest eval or train metric."""
    from benchmarks.stats import iqm

    evaluated = dict(last_eval or {})
    name = metric or _progress_metric(list(evaluated) or list(metrics))
    if name in evaluated:
        vals = np.asarray(evaluated[name], dtype=np.float64).reshape(-1)
    elif name in metrics:
        vals = _nanmean0(metrics[name]).reshape(-1)
    else:
        return {}
    vals = vals[np.isfinite(vals)]
    return {name: f"{iqm(vals):.4g}" if vals.size else "nan"}


def _progress_metric(names: Sequence[str]) -> str | None:
    for preferred in ("return", "episode_return", "loss"):
        if preferred in names:
            return preferred
    return next(iter(names), None)


@dataclasses.dataclass
class Result:
    """What `run` returns.

    Attributes:
      status: "completed", or "nonfinite" when it stopped on a non-finite value.
      results: the dict written to `results.json`.
      states: the final (or last finite) batched state, grid axis first.
      out_dir: where files were written (None when nothing was written).
    """

    status: str
    results: dict[str, Any]
    states: Any
    out_dir: str | None


class _Grid:
    """Seeds x sweep points, flattened to one axis: index g = p * num_seeds + s."""

    def __init__(self, config, num_seeds: int, seed: int, sweep):
        self.points = sweep_grid(sweep)
        self.seeds = [seed + s for s in range(num_seeds)]
        self.num_seeds = num_seeds
        self.size = len(self.points) * num_seeds
        self.grid_seeds = [s for _ in self.points for s in self.seeds]
        swept = set(sweep or {})
        batched = {
            name: np.asarray([pt[name] for pt in self.points for _ in self.seeds]) for name in swept
        }
        self.config = dataclasses.replace(config, **batched) if batched else config
        self.axes = dataclasses.replace(
            config, **{n: (0 if n in swept else None) for n in _pytree_fields(config)}
        )

    def labels(self) -> list[str]:
        return [", ".join(f"{k}={v}" for k, v in pt.items()) for pt in self.points]

    def per_point(self, values: np.ndarray) -> list:
        """[G, ...] -> nested list [P][S] (for results.json)."""
        v = np.asarray(values).reshape((len(self.points), self.num_seeds) + values.shape[1:])
        return jsonable(v)


# --------------------------------------------------------------------------- run


def run(
    algo: Any,
    config: Any,
    *,
    iterations: int,
    seeds: int = 1,
    seed: int = 0,
    sweep: Mapping[str, Sequence[Any]] | None = None,
    segment_length: int | None = None,
    out_dir: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    eval_every: int = 1,
    keep_checkpoints: int = 2,
    resume: bool = True,
    on_nonfinite: str = "stop",
    progress: bool = True,
    curve_metric: str | None = None,
    plot: bool = True,
    max_devices: int | None = None,
    stop_after_segments: int | None = None,
    scan: bool = True,
    seed_chunk: int | None = None,
) -> Result:
    """Trains `algo` for every seed x sweep point in one compiled program.

    Args:
      algo: the algorithm module (see the module docstring).
      config: an instance of `algo.Config`.
      iterations: total number of `step` calls per grid point.
      seeds: number of seeds; they are `seed, seed + 1, ..., seed + seeds - 1`.
      seed: the first seed.
      sweep: `{field: [values]}` over float (pytree-leaf) fields of `config`; several
        fields give their Cartesian product. All points x seeds are vmapped together.
      segment_length: iterations per `lax.scan` segment (default: about 50 segments).
      out_dir: directory for `log.jsonl`, `results.json`, `curve.png`, `checkpoints/`;
        None keeps everything in memory (no checkpoints, no resume).
      checkpoint_every: write a checkpoint every this many segments (and at the end).
      eval_every: evaluate every this many segments (and at iteration 0 and the end).
      keep_checkpoints: how many checkpoints to keep.
      resume: continue from the latest checkpoint in `out_dir` if there is one. The
        config, seeds, sweep and segment length must match; `iterations` may grow.
      on_nonfinite: "stop" ends the run at the first segment whose metrics or state hold
        a NaN or inf, without checkpointing it; "continue" records where each grid point
        diverged and goes on (ablations that expect some settings to diverge).
      progress: show a progress bar (stderr) with ETA and the latest metric.
      curve_metric: metric for the learning curve and progress bar (default: "return",
        else "loss", else the first metric; evaluation metrics before training ones).
      plot: write `curve.png`.
      max_devices: use at most this many devices for the grid axis.
      stop_after_segments: return after this many segments of this call (checkpointing
        the last one), as if killed; for tests of resumption.
      scan: run a segment's steps under `lax.scan` (default). False calls one jitted
        (vmapped) step per iteration from Python instead: on XLA's CPU backend a
        convolution inside a loop body runs many times slower than outside one
        (jax-ml/jax#12868; a U-Net step measured 19x slower), so conv nets on CPU want
        False. The numbers are the same either way.
      seed_chunk: vmap at most this many grid points at a time on each device; a device's
        points then run chunk after chunk inside the one compiled program (`lax.map` over
        chunks, each chunk scanning the whole segment). A wide vmap stops paying once the
        per-seed working set (replay buffers, activations, optimizer state) outgrows the
        CPU caches: DQN's throughput on two cores falls beyond 4 seeds per core unless
        chunked (README, "Throughput"). None vmaps all of a device's points at once. Each
        point computes the same math either way (bit for bit in the tests, and for a
        500k-step DQN run with chunks of 2), but XLA may pick other kernels for another
        vmap width, so floats can round differently, as between one device and several.
        Applies to scanned segments (`scan=True`).

    Returns:
      A `Result`.
    """
    if on_nonfinite not in ("stop", "continue"):
        raise ValueError(f"on_nonfinite must be 'stop' or 'continue'; got {on_nonfinite!r}")
    for name, value in (("iterations", iterations), ("seeds", seeds)):
        stabilizers.checks.positive_int(name, value)
    if not (isinstance(config, algo.Config)):
        raise ValueError(
            f"config must be an instance of {algo.__name__}.Config; got {type(config).__name__}"
        )
    sweep = {k: list(v) for k, v in (sweep or {}).items()}
    _check_sweep(config, sweep)
    if segment_length is None:
        segment_length = max(1, iterations // 50)
    stabilizers.checks.positive_int("segment_length", segment_length)
    stabilizers.checks.positive_int("checkpoint_every", checkpoint_every)
    stabilizers.checks.positive_int("eval_every", eval_every)
    if seed_chunk is not None:
        stabilizers.checks.positive_int("seed_chunk", seed_chunk)

    wall_start = time.perf_counter()
    grid = _Grid(config, seeds, seed, sweep)
    unit_name, unit_count = units(algo, config)
    algo_name = getattr(algo, "__name__", type(algo).__name__).rsplit(".", 1)[-1]
    lead = jax.process_index() == 0
    echo = (lambda msg: print(msg, file=sys.stderr, flush=True)) if lead else (lambda msg: None)

    # ---- the vmapped, sharded programs
    keys = jnp.stack([jax.random.key(s) for s in grid.grid_seeds])
    abstract = jax.eval_shape(algo.init, keys[0], config)
    axes = stabilizers.seed_axes(abstract)
    vinit = jax.vmap(algo.init, in_axes=(0, grid.axes), out_axes=axes)
    vstep = jax.vmap(algo.step, in_axes=(axes, grid.axes), out_axes=(axes, 0))
    veval = jax.vmap(algo.evaluate, in_axes=(axes, grid.axes, 0), out_axes=0)
    vfinite = jax.vmap(_tree_all_finite, in_axes=(axes,))

    def whole_segment(states, cfg, length):
        states, metrics = jax.lax.scan(lambda s, _: vstep(s, cfg), states, None, length=length)
        return states, metrics, vfinite(states)

    def segment(states, cfg, length):
        # this device's grid points, `chunk` at a time (see `seed_chunk` above)
        if chunk is None:
            return whole_segment(states, cfg, length)
        chunks = local // chunk

        def split(tree, tree_axes):  # batched leaves -> [chunks, chunk, ...]
            return jax.tree.map(
                lambda a, x: None if a is None else x.reshape(chunks, chunk, *x.shape[1:]),
                tree_axes,
                tree,
                is_leaf=is_none,
            )

        def merge(tree_axes, whole, part):  # shared leaves (axis None) from the whole tree
            return jax.tree.map(
                lambda a, x, c: x if a is None else c, tree_axes, whole, part, is_leaf=is_none
            )

        def one_chunk(xs):
            s_chunk, c_chunk = xs
            return whole_segment(
                merge(axes, states, s_chunk), merge(grid.axes, cfg, c_chunk), length
            )

        out, metrics, finite = jax.lax.map(one_chunk, (split(states, axes), split(cfg, grid.axes)))
        # batched leaves back to [points, ...]; shared leaves agree across chunks: the first
        first = lambda tree: jax.tree.map(lambda y: y[0], tree)  # noqa: E731
        out = jax.tree.map(
            lambda a, x: first(x) if a is None else x.reshape(local, *x.shape[2:]),
            axes,
            out,
            is_leaf=is_none,
        )
        metrics = jax.tree.map(
            lambda m: jnp.swapaxes(m, 0, 1).reshape(length, local, *m.shape[3:]), metrics
        )
        return out, metrics, finite.reshape(local)

    devices = jax.devices()
    if max_devices is not None:
        devices = devices[:max_devices]
    n_dev = max(d for d in range(1, len(devices) + 1) if grid.size % d == 0)
    if n_dev < len(devices):
        echo(f"[harness] grid of {grid.size} split over {n_dev} of {len(devices)} devices")
    local = grid.size // n_dev
    # the chunk size in effect: None where a device holds no more than one chunk
    chunk = seed_chunk if seed_chunk is not None and local > seed_chunk else None
    if chunk is not None and local % chunk:
        raise ValueError(
            f"seed_chunk={seed_chunk} does not divide the {local} grid points of each of "
            f"{n_dev} device(s) ({grid.size} in all); choose a divisor of {local}"
        )

    def spec(a):
        return P() if a is None else P(_GRID)

    is_none = lambda x: x is None  # noqa: E731
    state_specs = jax.tree.map(spec, axes, is_leaf=is_none)
    cfg_specs = jax.tree.map(spec, grid.axes, is_leaf=is_none)
    if n_dev > 1:
        mesh = Mesh(np.asarray(devices[:n_dev]), (_GRID,))

        def shard(f, in_specs, out_specs):
            # Devices never communicate, so shard_map's varying-axes type check has nothing
            # to protect; it would reject a scan whose carry starts from constants (an
            # evaluation rollout) and becomes device-varying.
            return jax.shard_map(
                f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False
            )

        def place(tree, specs):
            shardings = jax.tree.map(lambda s: NamedSharding(mesh, s), specs)
            return jax.device_put(tree, shardings)
    else:
        shard = lambda f, in_specs, out_specs: f  # noqa: E731
        place = lambda tree, specs: tree  # noqa: E731

    def one_step(states, cfg):
        # no lax.scan, not even of length 1: XLA keeps the loop, and the slow convolution
        states, metrics = vstep(states, cfg)
        metrics = jax.tree.map(lambda m: m[None], metrics)
        return states, metrics, vfinite(states)

    def segment_program(length):
        if not scan:
            return _HostLoop(
                jax.jit(
                    shard(
                        one_step,
                        (state_specs, cfg_specs),
                        (state_specs, P(None, _GRID), P(_GRID)),
                    )
                ),
                length,
            )
        body = lambda s, c: segment(s, c, length)  # noqa: E731
        return jax.jit(
            shard(body, (state_specs, cfg_specs), (state_specs, P(None, _GRID), P(_GRID)))
        )

    eval_program = jax.jit(shard(veval, (state_specs, cfg_specs, P(_GRID)), P(_GRID)))
    cfg_b = place(grid.config, cfg_specs)

    lengths = [segment_length] * (iterations // segment_length)
    if iterations % segment_length:
        lengths.append(iterations % segment_length)
    ends = list(itertools.accumulate(lengths))

    # ---- files, checkpoints, resume
    meta = {
        "format_version": FORMAT_VERSION,
        "algo": algo_name,
        "config": jsonable(config),
        "seeds": grid.seeds,
        "sweep": jsonable(sweep),
        "segment_length": segment_length,
    }
    mgr = None
    log_path = None
    start_segment = 0
    records: list[dict] = []
    t0 = time.perf_counter()
    states = jax.jit(vinit)(keys, grid.config)
    states = place(states, state_specs)
    jax.block_until_ready(states)
    init_seconds = time.perf_counter() - t0
    if out_dir is not None:
        import orbax.checkpoint as ocp

        out_dir = os.path.abspath(os.fspath(out_dir))
        os.makedirs(out_dir, exist_ok=True)
        log_path = os.path.join(out_dir, "log.jsonl")
        mgr = ocp.CheckpointManager(
            os.path.join(out_dir, "checkpoints"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep_checkpoints, create=True),
        )
        latest = mgr.latest_step() if resume else None
        if latest is not None:
            restored = mgr.restore(
                latest,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(_unwrap_keys(states)),
                    meta=ocp.args.JsonRestore(),
                ),
            )
            saved = restored["meta"]
            for field in ("format_version", "algo", "config", "seeds", "sweep", "segment_length"):
                if saved.get(field) != meta[field]:
                    raise ValueError(
                        f"{out_dir} holds a run with a different {field} "
                        f"({saved.get(field)!r} != {meta[field]!r}); use another out_dir or "
                        "resume=False"
                    )
            states = place(_rewrap_keys(restored["state"], states), state_specs)
            start_segment = int(saved["segments_done"])
            if start_segment > len(lengths) or (
                start_segment > 0 and ends[start_segment - 1] != saved["iteration"]
            ):
                raise ValueError(
                    f"checkpoint at iteration {saved['iteration']} does not fit a run of "
                    f"{iterations} iterations in segments of {segment_length}"
                )
            records = _read_log(log_path)[: int(saved["log_records"])]
            echo(f"[harness] resumed {algo_name} from {out_dir} at iteration {saved['iteration']}")
        elif resume is False and mgr.latest_step() is not None:
            for step in list(mgr.all_steps()):
                mgr.delete(step)
        _write_log(log_path, records)

    # ---- compile (timed separately)
    t0 = time.perf_counter()
    programs: dict[int, Any] = {}
    for length in sorted(set(lengths[start_segment:]) or {segment_length}):
        programs[length] = segment_program(length).lower(states, cfg_b).compile()

    def eval_keys(segment_index: int):
        return place(
            jax.vmap(
                lambda k: jax.random.fold_in(jax.random.fold_in(k, _EVAL_STREAM), segment_index + 1)
            )(keys),
            P(_GRID),
        )

    compiled_eval = eval_program.lower(states, cfg_b, eval_keys(0)).compile()
    compile_seconds = time.perf_counter() - t0

    # ---- the loop
    run_seconds = 0.0
    eval_seconds = 0.0
    status = "completed"
    diverged_at = np.full(grid.size, -1, dtype=np.int64)
    last_eval: dict[str, np.ndarray] | None = None
    unit_label = f"{unit_name}_per_second"

    def evaluate(segment_index: int):
        nonlocal eval_seconds
        t = time.perf_counter()
        out = jax.device_get(compiled_eval(states, cfg_b, eval_keys(segment_index)))
        eval_seconds += time.perf_counter() - t
        return {k: np.asarray(v) for k, v in out.items()}

    if start_segment == 0 and not records:
        last_eval = evaluate(-1)
        records.append({"segment": -1, "iteration": 0, unit_name: 0, "eval": jsonable(last_eval)})
        if log_path:
            _append_log(log_path, records[-1])

    from tqdm.auto import tqdm

    bar = tqdm(
        total=iterations,
        initial=ends[start_segment - 1] if start_segment else 0,
        unit="it",
        desc=algo_name,
        disable=not (progress and lead),
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        file=sys.stderr,
    )
    done_this_call = 0
    k = start_segment
    for k in range(start_segment, len(lengths)):
        t = time.perf_counter()
        new_states, metrics, finite = programs[lengths[k]](states, cfg_b)
        jax.block_until_ready(new_states)
        segment_seconds = time.perf_counter() - t
        run_seconds += segment_seconds
        metrics = {name: np.asarray(v) for name, v in jax.device_get(metrics).items()}
        ok = np.asarray(finite) & np.all(
            [
                np.all(np.isfinite(v.reshape(v.shape[0], grid.size, -1)), axis=(0, 2))
                for v in metrics.values()
            ]
            or [np.ones(grid.size, bool)],
            axis=0,
        )
        record = {
            "segment": k,
            "iteration": ends[k],
            unit_name: ends[k] * unit_count,
            "seconds": segment_seconds,  # this segment's run time, after block_until_ready
            "train": {n: jsonable(_nanmean0(v)) for n, v in metrics.items()},
        }
        if not ok.all():
            bad = [g for g in np.flatnonzero(~ok) if diverged_at[g] < 0]
            diverged_at[bad] = ends[k]
            if on_nonfinite == "stop":
                where = "; ".join(
                    f"seed {grid.grid_seeds[g]}"
                    + (f" ({grid.labels()[g // grid.num_seeds]})" if sweep else "")
                    for g in np.flatnonzero(~ok)
                )
                echo(
                    f"[harness] non-finite metrics or state in segment {k} (iterations "
                    f"{ends[k] - lengths[k]}..{ends[k]}) at {where}: stopping. The last good "
                    f"checkpoint is kept" + (f" in {out_dir}/checkpoints" if mgr else "") + "."
                )
                records.append(record)
                if log_path:
                    _append_log(log_path, record)
                status = "nonfinite"
                break
        states = new_states
        if (k + 1) % eval_every == 0 or k == len(lengths) - 1:
            last_eval = evaluate(k)
            record["eval"] = jsonable(last_eval)
        records.append(record)
        if log_path:
            _append_log(log_path, record)
        done_this_call += 1
        stop_now = stop_after_segments is not None and done_this_call >= stop_after_segments
        if mgr is not None and (
            (k + 1) % checkpoint_every == 0 or k == len(lengths) - 1 or stop_now
        ):
            _save(
                mgr,
                k + 1,
                states,
                {**meta, "segments_done": k + 1, "iteration": ends[k], "log_records": len(records)},
            )
        bar.update(lengths[k])
        bar.set_postfix(_postfix(curve_metric, last_eval, metrics))
        if stop_now:
            break
    bar.close()
    if mgr is not None:
        mgr.wait_until_finished()
        mgr.close()

    iterations_done = (
        ends[k] if status == "completed" and k < len(lengths) else (ends[k - 1] if k > 0 else 0)
    )
    finished = status == "completed" and iterations_done == iterations
    if finished and last_eval is None:  # resumed a run that had already finished
        last_eval = evaluate(len(lengths) - 1)
    iters_this_call = sum(lengths[start_segment : start_segment + done_this_call])
    per_second = iters_this_call * unit_count * grid.size / run_seconds if run_seconds > 0 else None
    final_train = {}
    for rec in reversed(records):
        if "train" in rec:
            final_train = rec["train"]
            break
    results = {
        "format_version": FORMAT_VERSION,
        "algo": algo_name,
        "status": "interrupted" if status == "completed" and not finished else status,
        "config": jsonable(config),
        "seeds": grid.seeds,
        "sweep": jsonable(sweep),
        "grid": [{**pt, "seed": s} for pt in grid.points for s in grid.seeds],
        "iterations": iterations_done,
        "units": unit_name,
        "units_per_iteration": unit_count,
        unit_name: iterations_done * unit_count,
        "final": {n: grid.per_point(v) for n, v in (last_eval or {}).items()},
        "final_train": {
            n: grid.per_point(np.asarray(v, dtype=np.float64)) for n, v in final_train.items()
        },
        "diverged_at_iteration": grid.per_point(diverged_at),
        unit_label: per_second,
        "units_per_second": per_second,
        "compile_seconds": compile_seconds,
        "init_seconds": init_seconds,
        "run_seconds": run_seconds,
        "eval_seconds": eval_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "iterations_this_call": iters_this_call,
        "devices": n_dev,
        "seed_chunk": chunk,
        "platform": jax.default_backend(),
        "jax_version": jax.__version__,
    }
    for name, per_point in results["final"].items():  # `final_return` etc., if free
        results.setdefault(f"final_{name}", per_point)
    if out_dir is not None and lead:
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        if plot:
            _plot_curve(out_dir, records, grid, unit_name, curve_metric, algo_name)
    return Result(status=results["status"], results=results, states=states, out_dir=out_dir)


class _HostLoop:
    """A segment as `length` calls of a one-step program (the `scan=False` path)."""

    def __init__(self, one_step, length: int):
        self.one_step, self.length = one_step, length

    def lower(self, *args):
        self.one_step = self.one_step.lower(*args).compile()
        return self

    def compile(self):
        return self

    def __call__(self, states, cfg):
        metrics, finite = [], None
        for _ in range(self.length):
            states, m, f = self.one_step(states, cfg)
            metrics.append(m)
            finite = f if finite is None else finite & f
        stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *metrics)
        return states, stacked, finite


# --------------------------------------------------------------------------- files


def _save(mgr, step: int, states: Any, meta: dict) -> None:
    import orbax.checkpoint as ocp

    mgr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_unwrap_keys(states)), meta=ocp.args.JsonSave(meta)
        ),
    )


def _read_log(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _write_log(path: str, records: list[dict]) -> None:
    with open(path, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def _append_log(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    """The records of a run's `log.jsonl` (one per segment; `None` marks non-finite)."""
    return _read_log(os.path.join(os.fspath(out_dir), "log.jsonl"))


def curve(records: list[dict], metric: str, units_name: str, kind: str | None = None):
    """Extracts `(x[T], y[T, G])` for `metric` from log records.

    Args:
      records: from `read_log`.
      metric: the metric name.
      units_name: the x axis (e.g. "env_steps" or "iteration").
      kind: "eval" or "train" (default: "eval" if the metric was evaluated).

    Returns:
      `(x, y)` as float arrays; non-finite entries are NaN.
    """
    if kind is None:
        kind = "eval" if any(metric in r.get("eval", {}) for r in records) else "train"
    xs, ys = [], []
    for r in records:
        if metric in r.get(kind, {}):
            xs.append(r[units_name])
            ys.append(
                [
                    np.nan if v is None else v
                    for v in np.ravel(np.asarray(r[kind][metric], dtype=object))
                ]
            )
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _plot_curve(out_dir, records, grid, unit_name, metric, algo_name) -> None:
    from benchmarks import plots

    names_eval = {n for r in records for n in r.get("eval", {})}
    names_train = {n for r in records for n in r.get("train", {})}
    metric = metric or _progress_metric(sorted(names_eval)) or _progress_metric(sorted(names_train))
    if metric is None:
        return
    x, y = curve(records, metric, unit_name)
    if len(x) < 2:
        return
    y = y.reshape(len(x), len(grid.points), grid.num_seeds)
    finite = y[np.isfinite(y)]
    logy = bool(finite.size and finite.min() > 0 and finite.max() / finite.min() > 100)
    plots.learning_curve(
        os.path.join(out_dir, "curve.png"),
        x,
        y,
        grid.labels(),
        xlabel=unit_name.replace("_", " "),
        ylabel=metric,
        title=f"{algo_name}: {grid.num_seeds} seed(s)",
        logy=logy,
    )
