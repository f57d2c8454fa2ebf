"""What every field of the cross-field study shares: the age axis, the rows, normalization.

The axis is the target's mean age in updates of the network it follows
(`stabilizers.mean_age`): a hard copy every N updates has age (N - 1) / 2, an EMA of decay
mu has age mu / (1 - mu), no target has age 0. Mechanisms are compared at equal age:
`tracker(mechanism, age)` gives the `(every, decay)` of `stabilizers.periodic` for it.

A row is one (field, algorithm, task, mechanism, age, seed) of the study's JSON, with the
field's own score oriented so that higher is better and its normalization between a floor
and a ceiling measured in the same study, so that 0 and 1 mean the same in every panel.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

MECHANISMS = ("none", "hard", "ema")
FIELDS = ("rl", "generative", "representation")
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
    out = {k: values[k] for k in ROW_KEYS}
    out.update({k: v for k, v in values.items() if k not in out})
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
