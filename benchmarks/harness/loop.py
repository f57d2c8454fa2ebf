"""The segment loop: `run` trains every seed x sweep point of an algorithm, a segment at a
time, and between segments logs, evaluates, checkpoints and checks for non-finite values."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

import stabilizers
from benchmarks import provenance
from benchmarks.harness import checkpoints
from benchmarks.harness.checkpoints import Checkpoints
from benchmarks.harness.grid import Grid, Schedule, check_sweep, units
from benchmarks.harness.program import Program, device_layout
from benchmarks.harness.records import (
    FORMAT_VERSION,
    Log,
    jsonable,
    nanmean0,
    plot_curve,
    postfix,
    progress_bar,
    write_results,
)


@dataclasses.dataclass
class Result:
    """What `run` returns.

    Attributes:
      status: "completed", "interrupted" (stopped by `stop_after_segments`), or "nonfinite"
        when it stopped on a non-finite value.
      results: the dict written to `results.json`.
      states: the final (or last finite) batched state, grid axis first.
      out_dir: where files were written (None when nothing was written).
    """

    status: str
    results: dict[str, Any]
    states: Any
    out_dir: str | None


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
    name: str | None = None,
) -> Result:
    """Trains `algo` for every seed x sweep point in one compiled program.

    Args:
      algo: the algorithm module (`benchmarks.algorithm.Algorithm`).
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
      resume: continue from the latest checkpoint in `out_dir` that restores (one that
        does not is skipped and moved to `out_dir/skipped_checkpoints/`). The name,
        config, seeds, sweep and segment length must match; `iterations` may grow, and
        so may the config fields the algorithm lists in `RUN_LENGTH_FIELDS`.
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
        (jax-ml/jax#12868), so conv nets on CPU want False. The numbers are the same.
      seed_chunk: vmap at most this many grid points at a time on each device; a device's
        points then run chunk after chunk inside the one compiled program (`lax.map` over
        chunks, each chunk scanning the whole segment). A wide vmap stops paying once the
        per-seed working set (replay buffers, activations, optimizer state) outgrows the
        CPU caches. None vmaps all of a device's points at once. Each point computes the
        same math either way, but XLA may pick other kernels for another vmap width, so
        floats can round differently, as between one device and several. Applies to
        scanned segments (`scan=True`).
      name: the name results and checkpoints are labelled with (default: the last part
        of the module's name); `benchmarks.train` passes the registered name.

    Returns:
      A `Result`.

    Raises:
      ValueError: a bad argument (see `check`).
      checkpoints.Incompatible: `out_dir` holds another run's checkpoints.

    With several processes (`jax.distributed`), every process calls `run` with the same
    arguments: the grid is split over every process's devices, metrics and evaluations
    are gathered to every process, and only process 0 writes the log, results and figure.
    """
    _check_options(on_nonfinite, checkpoint_every, eval_every, seed_chunk)
    sweep, segment_length = _checked_run(algo, config, iterations, seeds, sweep, segment_length)
    clock = _Clock()
    grid = Grid(config, seeds, seed, sweep)
    unit = units(algo, config)  # (name, count consumed per iteration)
    unit_name = unit[0]
    name = _name(algo, name)
    lead = jax.process_index() == 0
    echo = _echo if lead else (lambda msg: None)
    program = Program(
        algo, config, grid, scan=scan, seed_chunk=seed_chunk, max_devices=max_devices, echo=echo
    )
    schedule = Schedule(iterations, segment_length)
    meta = _meta(name, config, grid, sweep, segment_length)
    with clock("init"):
        states = jax.block_until_ready(program.init())
    out_dir, log, store = _open(out_dir, keep_checkpoints, lead)
    try:
        states, start = _resume(store, resume, states, meta, program, schedule, log, echo)
    except Exception:
        if store is not None:
            store.close()
        raise
    with clock("compile"):
        program.compile(schedule.lengths[start:] or [segment_length], states)

    tally = _Tally(schedule.iteration_after(start), np.full(grid.size, -1, dtype=np.int64))
    if start == 0 and not log.records:
        tally.last_eval = _evaluate(program, states, -1, clock)
        log.append({"segment": -1, "iteration": 0, unit_name: 0, "eval": jsonable(tally.last_eval)})
    bar = progress_bar(iterations, tally.iteration, name, progress and lead)
    for k in range(start, len(schedule)):
        new_states, metrics, ok, seconds = _run_segment(program, states, schedule.lengths[k])
        clock.add("run", seconds)
        end = schedule.ends[k]
        record = _segment_record(k, end, unit, seconds, metrics)
        if not ok.all():
            tally.diverged_at[~ok & (tally.diverged_at < 0)] = end
            if on_nonfinite == "stop":
                echo(_nonfinite_message(k, schedule, grid.describe(np.flatnonzero(~ok)), store))
                log.append(record)
                tally.status = "nonfinite"
                break
        states, tally.iteration, tally.segments_done = new_states, end, tally.segments_done + 1
        if (k + 1) % eval_every == 0 or k == len(schedule) - 1:
            tally.last_eval = _evaluate(program, states, k, clock)
            record["eval"] = jsonable(tally.last_eval)
        log.append(record)
        stop_now = stop_after_segments is not None and tally.segments_done >= stop_after_segments
        if store is not None and (
            (k + 1) % checkpoint_every == 0 or k == len(schedule) - 1 or stop_now
        ):
            saved = {"segments_done": k + 1, "iteration": end, "log_records": len(log.records)}
            store.save(k + 1, states, {**meta, **saved})
        bar.update(schedule.lengths[k])
        bar.set_postfix(postfix(curve_metric, tally.last_eval, metrics))
        if stop_now:
            break
    bar.close()
    if store is not None:
        store.close()

    if tally.status == "completed" and tally.iteration == iterations and tally.last_eval is None:
        # resumed a run that had already finished
        tally.last_eval = _evaluate(program, states, len(schedule) - 1, clock)
    tally.iterations_this_call = tally.iteration - schedule.iteration_after(start)
    results = _results(meta, grid, program, tally, log, clock, unit, iterations)
    if out_dir is not None and lead:
        write_results(out_dir, results)
        if plot:
            plot_curve(out_dir, log.records, grid, unit_name, curve_metric, name)
    return Result(status=results["status"], results=results, states=states, out_dir=out_dir)


# --------------------------------------------------------------------------- the parts


def check(
    algo: Any,
    config: Any,
    *,
    iterations: int,
    seeds: int = 1,
    seed: int = 0,
    sweep: Mapping[str, Sequence[Any]] | None = None,
    segment_length: int | None = None,
    out_dir: str | os.PathLike | None = None,
    resume: bool = True,
    name: str | None = None,
    on_nonfinite: str = "stop",
    checkpoint_every: int = 10,
    eval_every: int = 1,
    seed_chunk: int | None = None,
    max_devices: int | None = None,
) -> None:
    """Raises what `run` with these arguments would raise before training, compiling and
    writing nothing: bad options, a bad sweep, a seed chunk that does not fit the devices,
    the algorithm's own checks of the config (its `init` traced on abstract values with
    `jax.eval_shape`) and, when resuming, checkpoints in `out_dir` of another run.

    Raises:
      ValueError: a bad argument or config.
      checkpoints.Incompatible: `out_dir` holds another run's checkpoints.
    """
    _check_options(on_nonfinite, checkpoint_every, eval_every, seed_chunk)
    sweep, segment_length = _checked_run(algo, config, iterations, seeds, sweep, segment_length)
    grid = Grid(config, seeds, seed, sweep)
    device_layout(grid.size, seed_chunk, max_devices, lambda msg: None)
    keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), grid.size))
    jax.eval_shape(jax.vmap(algo.init, in_axes=(0, grid.axes)), keys, grid.config)
    if out_dir is None or not resume:
        return
    out_dir = os.path.abspath(os.fspath(out_dir))
    saved = checkpoints.saved_meta(out_dir)
    if saved is not None:
        meta = _meta(_name(algo, name), config, grid, sweep, segment_length)
        checkpoints.check_compatible(saved, meta, out_dir, run_length_fields(algo))
        Schedule(iterations, segment_length).resume(saved["segments_done"], saved["iteration"])


def run_length_fields(algo: Any) -> tuple[str, ...]:
    """The config fields that only set how long a run is (`algo.RUN_LENGTH_FIELDS`)."""
    return tuple(getattr(algo, "RUN_LENGTH_FIELDS", ()))


def _name(algo: Any, name: str | None) -> str:
    return name or getattr(algo, "__name__", type(algo).__name__).rsplit(".", 1)[-1]


def _echo(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Clock(dict):
    """Seconds spent per activity ("init", "compile", "run", "eval") since it was made."""

    def __init__(self):
        super().__init__(init=0.0, compile=0.0, run=0.0, eval=0.0)
        self.start = time.perf_counter()
        self.started_utc = provenance.now()

    def add(self, name: str, seconds: float) -> None:
        self[name] += seconds

    @contextlib.contextmanager
    def __call__(self, name: str):
        t = time.perf_counter()
        yield
        self.add(name, time.perf_counter() - t)


@dataclasses.dataclass
class _Tally:
    """Where the loop stands: the accepted iteration count and what it has seen."""

    iteration: int
    diverged_at: np.ndarray  # [G]: the iteration where each grid point diverged, or -1
    status: str = "completed"
    segments_done: int = 0  # accepted segments of this call
    iterations_this_call: int = 0
    last_eval: dict[str, np.ndarray] | None = None


def _check_options(on_nonfinite, checkpoint_every, eval_every, seed_chunk) -> None:
    """Raises a `ValueError` naming a bad option of the loop."""
    if on_nonfinite not in ("stop", "continue"):
        raise ValueError(f"on_nonfinite must be 'stop' or 'continue'; got {on_nonfinite!r}")
    stabilizers.checks.positive_int("checkpoint_every", checkpoint_every)
    stabilizers.checks.positive_int("eval_every", eval_every)
    if seed_chunk is not None:
        stabilizers.checks.positive_int("seed_chunk", seed_chunk)


def _checked_run(algo, config, iterations, seeds, sweep, segment_length):
    """The sweep as lists and the segment length; a `ValueError` names a bad argument."""
    for arg, value in (("iterations", iterations), ("seeds", seeds)):
        stabilizers.checks.positive_int(arg, value)
    if not isinstance(config, algo.Config):
        raise ValueError(
            f"config must be an instance of {getattr(algo, '__name__', 'algo')}.Config; got "
            f"{type(config).__name__}"
        )
    sweep = {k: list(v) for k, v in (sweep or {}).items()}
    check_sweep(config, sweep)
    if segment_length is None:
        segment_length = max(1, iterations // 50)
    stabilizers.checks.positive_int("segment_length", segment_length)
    return sweep, segment_length


def _meta(name, config, grid, sweep, segment_length) -> dict:
    """What identifies a run in its checkpoints (see `checkpoints.COMPATIBLE`)."""
    return {
        "format_version": FORMAT_VERSION,
        "algo": name,
        "config": jsonable(config),
        "seeds": grid.seeds,
        "sweep": jsonable(sweep),
        "segment_length": segment_length,
    }


def _open(out_dir, keep_checkpoints, lead) -> tuple[str | None, Log, Checkpoints | None]:
    """The run's directory (absolute, created), its log (written by the lead process
    only) and its checkpoints."""
    if out_dir is None:
        return None, Log(None), None
    out_dir = os.path.abspath(os.fspath(out_dir))
    os.makedirs(out_dir, exist_ok=True)
    return out_dir, Log(out_dir, write=lead), Checkpoints(out_dir, keep_checkpoints)


def _resume(store, resume, states, meta, program, schedule, log, echo) -> tuple[Any, int]:
    """The states and first segment of this call: from the latest checkpoint, or fresh.

    Without `resume`, any checkpoints in the store are deleted. The log keeps the records
    that belong to the checkpoint resumed from (none for a fresh run).
    """
    if store is None:
        return states, 0
    fields = run_length_fields(program.algo)
    restored = store.restore_latest(states, meta, fields, echo) if resume else None
    if restored is None:
        if not resume:
            store.clear()
        log.restart(0)
        return states, 0
    saved_states, saved = restored
    start = int(saved["segments_done"])
    schedule.resume(start, int(saved["iteration"]))
    log.restart(int(saved["log_records"]))
    echo(f"[harness] resumed {meta['algo']} from {store.out_dir} at iteration {saved['iteration']}")
    return program.place(saved_states, program.state_specs), start


def _run_segment(program, states, length):
    """One segment: `(states, metrics {name: [length, G]}, ok [G], seconds)`.

    `ok[g]` is False where grid point g's state or any of its metrics is not finite.
    """
    t = time.perf_counter()
    new_states, metrics, finite = program.segment(states, length)
    jax.block_until_ready(new_states)
    seconds = time.perf_counter() - t
    metrics, finite = program.fetch((metrics, finite))
    size = program.grid.size
    ok = np.asarray(finite) & np.all(
        [
            np.all(np.isfinite(v.reshape(v.shape[0], size, -1)), axis=(0, 2))
            for v in metrics.values()
        ]
        or [np.ones(size, bool)],
        axis=0,
    )
    return new_states, metrics, ok, seconds


def _segment_record(k, end, unit, seconds, metrics) -> dict:
    """The log record of segment k: where it ended, its run time, its mean metrics."""
    unit_name, unit_count = unit
    return {
        "segment": k,
        "iteration": end,
        unit_name: end * unit_count,
        "seconds": seconds,  # this segment's run time, after block_until_ready
        "train": {n: jsonable(nanmean0(v)) for n, v in metrics.items()},
    }


def _evaluate(program, states, segment_index, clock) -> dict[str, np.ndarray]:
    with clock("eval"):
        return program.evaluate(states, segment_index)


def _nonfinite_message(k, schedule, where, store) -> str:
    end = schedule.ends[k]
    kept = f" in {store.out_dir}/checkpoints" if store is not None else ""
    return (
        f"[harness] non-finite metrics or state in segment {k} (iterations "
        f"{end - schedule.lengths[k]}..{end}) at {where}: stopping. The last good "
        f"checkpoint is kept{kept}."
    )


def _results(meta, grid, program, tally, log, clock, unit, iterations) -> dict:
    """The contents of `results.json`."""
    unit_name, unit_count = unit
    run_seconds = clock["run"]
    per_second = (
        tally.iterations_this_call * unit_count * grid.size / run_seconds
        if run_seconds > 0
        else None
    )
    finished = tally.status == "completed" and tally.iteration == iterations
    return {
        "format_version": meta["format_version"],
        "algo": meta["algo"],
        "status": "interrupted" if tally.status == "completed" and not finished else tally.status,
        "config": meta["config"],
        "seeds": meta["seeds"],
        "sweep": meta["sweep"],
        "grid": [{**pt, "seed": s} for pt in grid.points for s in grid.seeds],
        "iterations": tally.iteration,
        "units": unit_name,
        "units_per_iteration": unit_count,
        unit_name: tally.iteration * unit_count,
        "final": {n: grid.per_point(v) for n, v in (tally.last_eval or {}).items()},
        "final_train": {
            n: grid.per_point(np.asarray(v, dtype=np.float64)) for n, v in log.last_train().items()
        },
        "diverged_at_iteration": grid.per_point(tally.diverged_at),
        f"{unit_name}_per_second": per_second,
        "compile_seconds": clock["compile"],
        "init_seconds": clock["init"],
        "run_seconds": run_seconds,
        "eval_seconds": clock["eval"],
        "wall_seconds": time.perf_counter() - clock.start,
        "iterations_this_call": tally.iterations_this_call,
        "devices": program.num_devices,
        "seed_chunk": program.chunk,
        "platform": jax.default_backend(),
        "jax_version": jax.__version__,
        "provenance": provenance.provenance(clock.started_utc),
    }
