"""What a run covers: the grid of seeds x sweep points, and its segments."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.harness.records import jsonable


def units(algo: Any, config: Any) -> tuple[str, int]:
    """What one `step` consumes: `algo.units(config)` or `("iterations", 1)`."""
    if hasattr(algo, "units"):
        name, count = algo.units(config)
        return str(name), int(count)
    return "iterations", 1


def pytree_fields(config: Any) -> list[str]:
    """The names of the config's pytree-leaf (float hyperparameter) fields."""
    return [f.name for f in dataclasses.fields(config) if f.metadata.get("pytree_node", True)]


def sweep_grid(sweep: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """The Cartesian product of a sweep `{field: [values]}` as a list of points."""
    if not sweep:
        return [{}]
    names = list(sweep)
    return [dict(zip(names, vals, strict=True)) for vals in itertools.product(*sweep.values())]


def check_sweep(config: Any, sweep: Mapping[str, Sequence[Any]]) -> None:
    """Raises a `ValueError` unless every swept field is a pytree leaf with some values."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    leaves = set(pytree_fields(config))
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
        wrong = [v for v in values if np.asarray(v).dtype.kind not in "iuf"]
        if wrong:
            raise ValueError(f"sweep field {name!r} takes numbers; got {wrong[0]!r}")


class Grid:
    """Seeds x sweep points, flattened to one axis: index g = p * num_seeds + s.

    Attributes:
      points: the sweep points, `[{field: value}]` (`[{}]` without a sweep).
      seeds: the seeds, `seed, ..., seed + num_seeds - 1`.
      grid_seeds: the seed of each grid index.
      config: the config with swept fields as arrays over the grid axis.
      axes: the config's `vmap` axes: 0 on swept fields, None elsewhere.
    """

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
            config, **{n: (0 if n in swept else None) for n in pytree_fields(config)}
        )

    def labels(self) -> list[str]:
        return [", ".join(f"{k}={v}" for k, v in pt.items()) for pt in self.points]

    def describe(self, indices: Sequence[int]) -> str:
        """ "seed 3 (decay=0.5); seed 4 (decay=0.5)" for grid indices (for messages)."""
        labels = self.labels()
        return "; ".join(
            f"seed {self.grid_seeds[g]}"
            + (f" ({labels[g // self.num_seeds]})" if self.points != [{}] else "")
            for g in indices
        )

    def per_point(self, values: np.ndarray) -> list:
        """[G, ...] -> nested list [P][S] (for results.json)."""
        v = np.asarray(values).reshape((len(self.points), self.num_seeds) + values.shape[1:])
        return jsonable(v)


class Schedule:
    """A run of `iterations` steps cut into segments of `segment_length` (the last shorter).

    Attributes:
      lengths: the length of each segment.
      ends: the iteration count at the end of each segment.
    """

    def __init__(self, iterations: int, segment_length: int):
        self.iterations, self.segment_length = iterations, segment_length
        self._cut(0, 0)

    def _cut(self, segments_done: int, iteration: int) -> None:
        """Segments of `segment_length` from `iteration` on, after `segments_done` done."""
        rest, length = self.iterations - iteration, self.segment_length
        done = [min(length, iteration - k * length) for k in range(segments_done)]
        self.lengths = (
            done + [length] * (rest // length) + ([rest % length] if rest % length else [])
        )
        self.ends = list(itertools.accumulate(self.lengths))
        if segments_done:
            self.ends[segments_done - 1] = iteration

    def __len__(self) -> int:
        return len(self.lengths)

    def iteration_after(self, segments_done: int) -> int:
        """The iteration count once the first `segments_done` segments have run."""
        return self.ends[segments_done - 1] if segments_done else 0

    def resume(self, segments_done: int, iteration: int) -> None:
        """Continues from a checkpoint of `segments_done` segments and `iteration` steps.

        A run extended after a short last segment goes on in whole segments from there.

        Raises:
          ValueError: the checkpoint is past the end of this run.
        """
        if iteration > self.iterations:
            raise ValueError(
                f"the checkpoint is at iteration {iteration}, past the end of this run of "
                f"{self.iterations} iterations (a run does not shrink)"
            )
        if segments_done and self.iteration_after(segments_done) != iteration:
            self._cut(segments_done, iteration)
