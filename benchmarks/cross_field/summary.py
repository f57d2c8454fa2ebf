"""Statistics of the cross-field rows: IQMs with intervals per cell, best ages, comparisons.

Every number of the report comes from here, computed from the rows alone. A cell is one
(field, algorithm, mechanism, variant, age) on the age axis (or one setting of another
axis); its estimate is the IQM of the normalized scores of its runs (`stats.label` says
"mean" below 4 runs) with a 95% bootstrap interval over runs, stratified by task when a
cell pools several tasks. A run whose normalized score is missing (a non-finite score)
counts as the floor, 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from benchmarks import stats

TARGETS = ("hard", "ema")


class Estimate(NamedTuple):
    """The IQM of a cell's normalized scores, its 95% interval, its runs and failures."""

    value: float
    low: float
    high: float
    n: int
    failures: int
    statistic: str

    @property
    def failure_rate(self) -> float:
        return self.failures / self.n if self.n else float("nan")

    def text(self, digits: int = 2) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def overlaps(self, other: Estimate) -> bool:
        return self.low <= other.high and other.low <= self.high


def normalized(r: dict) -> float:
    return 0.0 if r.get("normalized") is None else float(r["normalized"])


def estimate(rows: list[dict], key=normalized, seed: int = 0) -> Estimate:
    """The IQM of `key` over `rows` and its 95% interval (stratified over tasks)."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(key(r))
    pooled = np.asarray([v for vs in by_task.values() for v in vs], dtype=np.float64)
    value = float(stats.iqm(pooled))
    if len(by_task) > 1:
        low, high = stats.stratified_bootstrap_ci(list(by_task.values()), seed=seed)
    else:
        low, high = (float(v) for v in stats.bootstrap_ci(pooled, seed=seed))
    failures = sum(bool(r["failed"]) for r in rows)
    return Estimate(value, low, high, len(rows), failures, stats.label(len(rows)))


def difference(a: list[dict], b: list[dict], resamples: int = 2000, seed: int = 0) -> Estimate:
    """IQM(a) - IQM(b) of normalized scores with a 95% interval, runs resampled per side."""
    x = np.asarray([normalized(r) for r in a])
    y = np.asarray([normalized(r) for r in b])
    rng = np.random.default_rng(seed)
    xs = x[rng.integers(0, x.size, (resamples, x.size))]
    ys = y[rng.integers(0, y.size, (resamples, y.size))]
    diffs = stats.iqm(xs, axis=-1) - stats.iqm(ys, axis=-1)
    low, high = np.quantile(diffs, [0.025, 0.975])
    value = float(stats.iqm(x) - stats.iqm(y))
    return Estimate(value, float(low), float(high), x.size + y.size, 0, "IQM difference")


def groups(rows: Iterable[dict], *keys: str) -> dict[tuple, list[dict]]:
    """Rows grouped by the values of `keys`, in first-seen order."""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return out


def axis_rows(rows: list[dict], axis: str) -> list[dict]:
    return [r for r in rows if r.get("axis", "age") == axis]


def curves(rows: list[dict]) -> dict[tuple, dict[str, list[tuple[float, Estimate]]]]:
    """Age-axis estimates: `{(field, algorithm): {mechanism: [(age, Estimate), ...]}}` of
    the base variant, ages ascending."""
    base = [r for r in axis_rows(rows, "age") if r.get("variant", "base") == "base"]
    out: dict[tuple, dict[str, list]] = {}
    for (field, algorithm), part in groups(base, "field", "algorithm").items():
        lines = {}
        for (mechanism,), cell in groups(part, "mechanism").items():
            by_age = groups(cell, "age")
            lines[mechanism] = sorted((a[0], estimate(rs)) for a, rs in by_age.items())
        out[(field, algorithm)] = lines
    return out


class Best(NamedTuple):
    """The best (mechanism, age) cell of an algorithm and the run length it is part of."""

    mechanism: str
    age: float
    estimate: Estimate
    run_updates: float


def best_cell(rows: list[dict], mechanisms=("none",) + TARGETS) -> Best | None:
    """The cell of `mechanisms` with the highest IQM (ties: the younger age)."""
    cells = groups([r for r in rows if r["mechanism"] in mechanisms], "mechanism", "age")
    if not cells:
        return None
    scored = [(estimate(rs), key, rs) for key, rs in cells.items()]
    est, (mechanism, age), rs = max(scored, key=lambda t: (t[0].value, -t[1][1]))
    return Best(mechanism, age, est, float(np.median([r["run_updates"] for r in rs])))


def ages_of(rows: list[dict], mechanisms=("none",) + TARGETS) -> list[float]:
    return sorted({r["age"] for r in rows if r["mechanism"] in mechanisms})


def cell(rows: list[dict], mechanism: str, age: float | None = None) -> list[dict]:
    return [r for r in rows if r["mechanism"] == mechanism and (age is None or r["age"] == age)]


def trend(points: list[tuple[float, float]]) -> float:
    """Spearman's rank correlation of y with x over `points` (NaN below 3 points)."""
    if len(points) < 3:
        return float("nan")
    x, y = (np.argsort(np.argsort(np.asarray(v))) for v in zip(*points, strict=True))
    return float(np.corrcoef(x, y)[0, 1])


class PartnerPoint(NamedTuple):
    """One setting of the partner-speed axis: its runs' update ratio (geometric mean, range)
    and their score."""

    setting: str
    ratio: float
    ratio_low: float
    ratio_high: float
    estimate: Estimate
    rows: list


def partner_points(rows: list[dict]) -> list[PartnerPoint]:
    """The settings (row key `setting`, else the program) of partner-axis rows, by ratio."""
    out = []
    for _, part in groups(rows, "program", "setting").items():
        ratios = np.asarray([r["ratio"] for r in part if r.get("ratio")], dtype=np.float64)
        if not ratios.size:
            continue
        label = part[0].get("setting") or part[0]["program"]
        geo = float(np.exp(np.mean(np.log(ratios))))
        out.append(PartnerPoint(label, geo, ratios.min(), ratios.max(), estimate(part), part))
    return sorted(out, key=lambda p: p.ratio)


def scaling_points(rows: list[dict], variant: str) -> list[tuple[float, Estimate]]:
    """`[(k, Estimate)]` of the scaling rule's `variant` ("rule" or "control"), with the
    shared k = 1 reference."""
    reference = [r for r in rows if r["variant"] == "reference"]
    points = [(1.0, estimate(reference))] if reference else []
    mine = [r for r in rows if r["variant"] == variant]
    points += [(k[0], estimate(rs)) for k, rs in groups(mine, "k").items()]
    return sorted(points, key=lambda p: p[0])


def base_age_rows(rows: list[dict]) -> list[dict]:
    """The age-axis rows of the base sweeps (no "short" or "lr_x4" variant)."""
    return [r for r in axis_rows(rows, "age") if r.get("variant", "base") == "base"]
