"""The one training harness: seeds x sweep in one compiled program, in segments.

`run` takes an algorithm module (the shape `benchmarks.algorithm.Algorithm` describes),
vmaps its `init` / `step` / `evaluate` over a grid of seeds x sweep values (one compile
for the whole grid; seed `s` gets `jax.random.key(s)` at every sweep point, so sweep
points are compared on common random numbers), runs `step` under `lax.scan` for a segment
at a time, and between segments, outside jit: appends metrics to `log.jsonl`, updates a
progress bar, evaluates, writes an orbax checkpoint every few segments and checks that
everything is finite. A run resumes from its latest checkpoint that restores and ends
bit-identical to one never interrupted; `check` raises what `run` would reject, before
anything compiles or is written. With several devices the grid axis is split across them with
`jax.shard_map` (each device runs its own seeds; nothing is communicated); across hosts,
call `jax.distributed.initialize()` first and the mesh spans every process's devices
(metrics gathered to every process, files written by process 0).

The parts, one job each:

- `grid`: the grid of seeds x sweep points and the run's segments;
- `program`: the vmapped, chunked, sharded programs;
- `checkpoints`: orbax checkpoints and the check that one belongs to the run resuming it;
- `records`: `log.jsonl`, `results.json`, `curve.png` and the progress bar;
- `loop`: `run`, the segment loop.
"""

from benchmarks.harness.grid import sweep_grid, units
from benchmarks.harness.loop import Result, check, run, run_length_fields
from benchmarks.harness.records import (
    FORMAT_VERSION,
    completed,
    curve,
    jsonable,
    read_log,
    run_record,
)

__all__ = [
    "FORMAT_VERSION",
    "Result",
    "check",
    "completed",
    "run_record",
    "curve",
    "jsonable",
    "read_log",
    "run",
    "run_length_fields",
    "sweep_grid",
    "units",
]
