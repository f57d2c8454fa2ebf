"""What every field of the cross-field study shares: the age axis, the rows, normalization.

The axis is the target's mean age in updates of the network it follows
(`stabilizers.mean_age`): a hard copy every N updates has age (N - 1) / 2, an EMA of decay
mu has age mu / (1 - mu), no target has age 0. Mechanisms are compared at equal age:
`tracker(mechanism, age)` gives the `(every, decay)` of `stabilizers.periodic` for it.

A row is one (field, algorithm, task, mechanism, age, seed) of the study's JSON, with the
field's own score oriented so that higher is better and its normalization between a floor
and a ceiling measured in the same study, so that 0 and 1 mean the same in every panel.
Rows carry an `axis`: "age" (the default), "partner", "scaling" or "ceiling" (a run that
only serves as a normalization ceiling). A "partner" row has `ratio`, the updates of the
lagging partner per update of the other (TD3: critic updates per policy update, its delay
d; the VAE: encoder updates per decoder update), and `setting`, a label ("d = 2",
"cap 30"). A "scaling" row has `k` (the batch factor) and `variant`: "rule" (decay d^k),
"control" (decay d) or "reference" (k = 1). Rows of the age axis may have a `variant`
other than "base" (the same sweep at another run length or learning rate).

The runner (`Program`, `run_study`) trains each program of each field through the one
harness, in its own folder (a finished program is read back, an interrupted one resumes),
and turns its results into rows with the field module's `rows`. A field is a module with

    programs(quick: bool) -> list[Program]
    rows(program, results, out_dir) -> list[dict]   # each row with `floor` and `curve`
    ceilings(rows) -> rows                          # optional: ceilings set across programs

and `finish` fills `normalized` and `auc` from each row's `floor` and `ceiling`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import struct

MECHANISMS = ("none", "hard", "ema")
FIELDS = ("rl", "generative", "representation")
AXES = ("age", "partner", "scaling", "ceiling")
AGE_GRID = (0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10_000, 30_000)
ROW_KEYS = (
    "field",
    "algorithm",
    "task",
    "mechanism",
    "age",
    "seed",
    "score",
    "score_name",
    "normalized",
    "failed",
    "lag",
    "auc",
)


def tracker(mechanism: str, age: float, exact: bool = True) -> tuple[int, float]:
    """`(every, decay)` of `stabilizers.periodic` whose target has mean age `age`.

    "hard": a copy every N = 2 age + 1 updates (with `exact`, age must make N a whole
    number; otherwise the age is rounded to one that does); "ema": every update, decay
    age / (1 + age); "none": age 0, a copy every update.
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism must be one of {MECHANISMS}; got {mechanism!r}")
    if not (age >= 0 and math.isfinite(age)):
        raise ValueError(f"age must be a finite number >= 0; got {age!r}")
    if mechanism == "none" or age == 0:
        return 1, 0.0
    if mechanism == "hard":
        every = 2 * age + 1 if exact else 2 * round(age) + 1
        if abs(every - round(every)) > 1e-9:
            raise ValueError(f"a hard copy has ages (N - 1) / 2 for whole N; got age {age!r}")
        return int(round(every)), 0.0
    return 1, float(age) / (1.0 + float(age))


def ages(run_updates: int, fraction: float = 0.1, grid: Sequence[float] = AGE_GRID) -> list:
    """The ages of `grid` from 0 up to `fraction` of a run of `run_updates` updates."""
    if run_updates < 1:
        raise ValueError(f"run_updates must be >= 1; got {run_updates!r}")
    return [a for a in grid if a <= fraction * run_updates]


def points(mechanisms: Iterable[str], age_list: Sequence[float]) -> list[tuple[str, float]]:
    """The (mechanism, age) cells: age 0 once, as "none", then each mechanism at every
    positive age."""
    out = [("none", 0.0)] if 0 in age_list else []
    for mechanism in mechanisms:
        if mechanism != "none":
            out += [(mechanism, float(a)) for a in age_list if a > 0]
    return out


def normalize(score, floor: float, ceiling: float) -> np.ndarray:
    """`(score - floor) / (ceiling - floor)`: 0 at the floor, 1 at the ceiling."""
    if not (math.isfinite(floor) and math.isfinite(ceiling)) or ceiling == floor:
        raise ValueError(f"floor and ceiling must be finite and differ; got {floor}, {ceiling}")
    return (np.asarray(score, dtype=np.float64) - floor) / (ceiling - floor)


def auc(x: Sequence[float], y: Sequence[float]) -> float:
    """Area under a normalized learning curve `y(x)` over its x range, divided by that range
    (the curve's mean height, trapezoids); NaN points count as the floor (0)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.nan_to_num(np.asarray(y, dtype=np.float64), nan=0.0)
    if x.size < 2 or x[-1] <= x[0]:
        return float(y[-1]) if y.size else float("nan")
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def row(**values: Any) -> dict[str, Any]:
    """One row of the study's JSON; every key of `ROW_KEYS` is required, more are kept."""
    missing = [k for k in ROW_KEYS if k not in values]
    if missing:
        raise ValueError(f"a row needs {missing}")
    if values["field"] not in FIELDS:
        raise ValueError(f"field must be one of {FIELDS}; got {values['field']!r}")
    if values.get("axis", "age") not in AXES:
        raise ValueError(f"axis must be one of {AXES}; got {values['axis']!r}")
    out = {k: values[k] for k in ROW_KEYS}
    out.update({k: v for k, v in values.items() if k not in out})
    out.setdefault("axis", "age")
    for key in ("score", "normalized", "lag", "auc", "age"):
        v = out[key]
        out[key] = None if v is None or not math.isfinite(float(v)) else float(v)
    out["seed"], out["failed"] = int(out["seed"]), bool(out["failed"])
    return out


def write(path: str, rows: list[dict], provenance: dict, **extra: Any) -> None:
    """Writes `{"provenance", "rows", **extra}` as JSON (directories created)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"provenance": provenance, **extra, "rows": rows}, f, indent=1)


def read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


# --------------------------------------------------------------------------- programs


@struct.dataclass
class Cells:
    """A config whose one leaf, `cell`, picks the values of several fields from a table.

    A sweep over `cell` runs the cells (say hard copies every N and EMAs of decay d at the
    same mean ages) in one vmapped program, where a sweep over the fields themselves would
    run their Cartesian product.

    Attributes:
      inner: the algorithm's config.
      table: `((field, (value of cell 0, value of cell 1, ...)), ...)`.
      cell: the index of this cell.
    """

    inner: Any
    table: tuple = struct.field(pytree_node=False, default=())
    cell: int = 0

    def pick(self) -> Any:
        """`inner` with this cell's values (traced when `cell` is)."""
        values = {}
        for name, column in self.table:
            whole = all(isinstance(v, (int, np.integer)) for v in column)
            values[name] = jnp.asarray(np.asarray(column, dtype=int if whole else float))[self.cell]
        return dataclasses.replace(self.inner, **values)


class CellAlgorithm:
    """The harness algorithm of `Cells` configs: `module`'s functions on `config.pick()`."""

    Config = Cells

    def __init__(self, module: Any):
        self.module = module
        self.__name__ = getattr(module, "__name__", type(module).__name__)

    def init(self, key, config: Cells):
        return self.module.init(key, config.pick())

    def step(self, state, config: Cells):
        return self.module.step(state, config.pick())

    def evaluate(self, state, config: Cells, key):
        return self.module.evaluate(state, config.pick(), key)

    def units(self, config: Cells) -> tuple[str, int]:
        if hasattr(self.module, "units"):
            return self.module.units(config.inner)
        return "iterations", 1


class Cell(NamedTuple):
    """One point of a program: the config values it sets and what its rows say about it.

    Attributes:
      values: `{config field: value}` (pytree leaves; the same fields in every cell).
      labels: row keys of this cell (`mechanism`, `age`, `variant`, ...).
    """

    values: dict
    labels: dict


@dataclasses.dataclass(frozen=True)
class Program:
    """One harness call of the study: an algorithm's config and its cells, seeds apart.

    Attributes:
      name: unique within its field; its folder under the field's.
      field: "rl", "generative" or "representation".
      algorithm: the rows' algorithm name.
      task: the rows' task name.
      module: the harness algorithm (a module with Config, init, step, evaluate).
      config: an instance of `module.Config`.
      iterations: `step` calls per cell.
      cells: the cells, vmapped together with the seeds.
      segments: logged segments (a divisor of `iterations`).
      evaluations: evaluations after iteration 0, evenly spread (a divisor of `segments`).
      scan: the harness's `scan` (False for convolutions on a CPU).
    """

    name: str
    field: str
    algorithm: str
    task: str
    module: Any
    config: Any
    iterations: int
    cells: tuple[Cell, ...] = (Cell({}, {}),)
    segments: int = 10
    evaluations: int = 5
    scan: bool = True

    def __post_init__(self):
        if self.field not in FIELDS:
            raise ValueError(f"field must be one of {FIELDS}; got {self.field!r}")
        if self.iterations % self.segments or self.segments % self.evaluations:
            raise ValueError(
                f"{self.name}: segments ({self.segments}) must divide iterations "
                f"({self.iterations}) and evaluations ({self.evaluations}) divide segments"
            )
        names = {tuple(sorted(c.values)) for c in self.cells}
        if len(names) != 1:
            raise ValueError(f"{self.name}: every cell must set the same fields; got {names}")

    def harness_config(self) -> Cells:
        names = sorted(self.cells[0].values)
        table = tuple((name, tuple(c.values[name] for c in self.cells)) for name in names)
        return Cells(inner=self.config, table=table)

    def describe(self) -> str:
        return f"{len(self.cells)} cells x {self.iterations} iterations"


def age_cells(
    mechanisms, age_list, every_field: str, decay_field: str, prefix: str = ""
) -> list[Cell]:
    """The cells of `points(mechanisms, age_list)` as `periodic(every, decay)` values; the
    mechanism names get `prefix` (e.g. "layernorm_")."""
    cells = []
    for mechanism, age in points(mechanisms, age_list):
        every, decay = tracker(mechanism, age)
        name = prefix.rstrip("_") if (prefix and mechanism == "none") else prefix + mechanism
        cells.append(
            Cell(
                {every_field: every, decay_field: decay},
                {"mechanism": name, "age": age, "every": every, "decay": decay},
            )
        )
    return cells


def identity(program: Program, cell: Cell, seed: int) -> dict:
    """The keys that say which run a row is: field, algorithm, task, program, seed, the
    cell's labels (variant "base" and age None unless they say otherwise)."""
    return {
        "field": program.field,
        "algorithm": program.algorithm,
        "task": program.task,
        "program": program.name,
        "seed": seed,
        "variant": "base",
        "age": None,
        **cell.labels,
    }


def cell_values(results: dict, metric: str, kind: str = "final") -> np.ndarray:
    """`[cells, seeds]` of a metric of `results.json` (`kind` "final" or "final_train"),
    NaN where missing or non-finite."""
    per_point = results[kind].get(metric)
    if per_point is None:
        return np.full((len(results["sweep"]["cell"]), len(results["seeds"])), np.nan)
    return np.asarray(
        [[np.nan if v is None else v for v in seeds] for seeds in per_point], dtype=np.float64
    )


def initial_values(out_dir: str, metric: str, cells: int, seeds: int) -> np.ndarray:
    """`[cells, seeds]`: a metric of the evaluation at iteration 0 (the untrained networks)."""
    from benchmarks import harness

    records = harness.read_log(out_dir)
    first = next(r for r in records if r.get("iteration") == 0 and "eval" in r)
    v = np.asarray([np.nan if x is None else x for x in first["eval"][metric]], np.float64)
    return v.reshape(cells, seeds)


def learning_curve(out_dir: str, metric: str, cells: int, seeds: int, kind: str = "eval"):
    """`(fraction of the run [T], values [T, cells, seeds])` of a metric from the log."""
    from benchmarks import harness

    records = harness.read_log(out_dir)
    x, y = harness.curve(records, metric, "iteration", kind=kind)
    return x / max(x[-1], 1.0), y.reshape(len(x), cells, seeds)


# --------------------------------------------------------------------------- the runner


def _finished(out_dir: str, iterations: int) -> dict | None:
    path = os.path.join(out_dir, "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    done = results["status"] != "interrupted" and results["iterations"] == iterations
    return results if done else None


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes}m{s:02d}s" if minutes else f"{s}s"


def run_program(program: Program, out_dir: str, seeds: int, progress: bool = False) -> dict:
    """Trains `program` (or resumes it) in `out_dir`; returns its `results.json`.

    Each call appends its wall and CPU seconds, and the harness's compile seconds, to
    `timing.jsonl`. A program whose `results.json` is complete is not trained again."""
    from benchmarks import harness

    done = _finished(out_dir, program.iterations)
    if done is not None:
        return done
    wall, cpu = time.perf_counter(), time.process_time()
    segment = program.iterations // program.segments
    res = harness.run(
        CellAlgorithm(program.module),
        program.harness_config(),
        iterations=program.iterations,
        seeds=seeds,
        sweep={"cell": list(range(len(program.cells)))},
        segment_length=segment,
        out_dir=out_dir,
        checkpoint_every=max(1, program.segments // 5),
        eval_every=program.segments // program.evaluations,
        on_nonfinite="continue",
        progress=progress,
        plot=False,
        scan=program.scan,
    )
    timing = {
        "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "compile_seconds": res.results["compile_seconds"],
        "iterations_this_call": res.results["iterations_this_call"],
    }
    with open(os.path.join(out_dir, "timing.jsonl"), "a") as f:
        f.write(json.dumps(timing) + "\n")
    return res.results


def timing(out_dir: str) -> dict:
    """The wall, CPU and compile seconds of a program's calls, summed."""
    path = os.path.join(out_dir, "timing.jsonl")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        calls = [json.loads(line) for line in f if line.strip()]
    keys = ("wall_seconds", "cpu_seconds", "compile_seconds")
    return {k: sum(c[k] for c in calls) for k in keys} | {"calls": len(calls)}


def scaling_reference(age_rows: list[dict], age: float) -> list[dict]:
    """The EMA cell at `age` of an age axis, again as the k = 1 point of the EMA scaling
    rule's axis (same runs, relabelled)."""
    return [
        {**r, "axis": "scaling", "k": 1.0, "variant": "reference"}
        for r in age_rows
        if r["mechanism"] == "ema" and r["age"] == age
    ]


def finish(rows: list[dict]) -> list[dict]:
    """Fills `normalized` (of `score`) and `auc` (of `curve`) from each row's `floor` and
    `ceiling`; rows without both keep None."""
    out = []
    for r in rows:
        r = dict(r)
        floor, ceiling = r.get("floor"), r.get("ceiling")
        ok = floor is not None and ceiling is not None and math.isfinite(floor - ceiling)
        if ok and floor != ceiling:
            if r["score"] is not None:
                r["normalized"] = float(normalize(r["score"], floor, ceiling))
            if r.get("curve"):
                y = normalize(np.asarray(r["curve"], dtype=np.float64), floor, ceiling)
                r["auc"] = auc(r["curve_x"], y)
        out.append(row(**r))
    return out


def run_study(
    fields: dict[str, Any],
    *,
    quick: bool,
    seeds: int,
    runs_dir: str,
    write_rows: Callable[[list[dict], dict], None],
    echo: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> list[dict]:
    """Runs every program of every field module in `fields`, in order; returns the rows.

    After each program the rows so far go to `write_rows(rows, programs)` (`programs`: a
    summary of each program with its timing), so a partial study can be reported.
    """
    planned = [(name, p) for name, module in fields.items() for p in module.programs(quick)]
    study_start, cpu_start = time.perf_counter(), time.process_time()
    by_field: dict[str, list[dict]] = {name: [] for name in fields}
    summaries: dict[str, dict] = {}
    progress = sys.stderr.isatty()
    for i, (field, program) in enumerate(planned):
        out_dir = os.path.join(runs_dir, field, program.name)
        head = f"[cross_field] ({i + 1}/{len(planned)}) {field}/{program.name}"
        before = _finished(out_dir, program.iterations) is not None
        echo(f"{head}: {program.describe()} x {seeds} seeds" + (" (done before)" if before else ""))
        results = run_program(program, out_dir, seeds, progress)
        by_field[field] += fields[field].rows(program, results, out_dir)
        summaries[f"{field}/{program.name}"] = {
            "algorithm": program.algorithm,
            "task": program.task,
            "cells": len(program.cells),
            "seeds": seeds,
            "iterations": program.iterations,
            "status": results["status"],
            # the commit its (last) training call ran; rows may be rebuilt at a later one
            "commit": (results.get("provenance") or {}).get("commit"),
            **timing(out_dir),
        }
        if not before:
            t = summaries[f"{field}/{program.name}"]
            echo(
                f"{head}: done in {_clock(t['wall_seconds'])} (compile "
                f"{t['compile_seconds']:.0f} s, CPU {_clock(t['cpu_seconds'])}); study "
                f"{_clock(time.perf_counter() - study_start)}"
            )
        write_rows(_all_rows(fields, by_field), summaries)
    rows = _all_rows(fields, by_field)
    echo(
        f"[cross_field] total {_clock(time.perf_counter() - study_start)} wall, CPU "
        f"{_clock(time.process_time() - cpu_start)}, {len(planned)} programs, {len(rows)} rows"
    )
    return rows


def _all_rows(fields: dict[str, Any], by_field: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for name, module in fields.items():
        part = by_field[name]
        if hasattr(module, "ceilings"):
            part = module.ceilings(part)
        rows += finish(part)
    return rows
