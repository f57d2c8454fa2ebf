"""What a run leaves behind: `log.jsonl`, `results.json`, `curve.png`, the progress bar."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1


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


# --------------------------------------------------------------------------- log.jsonl


def read_jsonl(path: str) -> list[dict]:
    """The records of a JSON-lines file ([] when it does not exist)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def append_log(path: str, record: dict) -> None:
    """Appends one record to a JSON-lines file."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


class Log:
    """A run's records, one per segment, mirrored to `out_dir/log.jsonl` when there is one.

    With `write=False` (every process but the lead of several) the file is read, never
    written.
    """

    def __init__(self, out_dir: str | None, write: bool = True):
        self.path = None if out_dir is None else os.path.join(out_dir, "log.jsonl")
        self.write = write
        self.records: list[dict] = []

    def restart(self, keep: int) -> None:
        """Keeps the first `keep` records of the file (a resumed run), drops the rest."""
        if self.path is None:
            return
        self.records = read_jsonl(self.path)[:keep] if keep else []
        if self.write:  # replaced whole, so that a reader sees the old file or the new
            with open(self.path + ".tmp", "w") as f:
                for r in self.records:
                    f.write(json.dumps(r) + "\n")
            os.replace(self.path + ".tmp", self.path)

    def append(self, record: dict) -> None:
        self.records.append(record)
        if self.path is not None and self.write:
            append_log(self.path, record)

    def last_train(self) -> dict:
        """The training metrics of the latest record that has them ({} when none has)."""
        for rec in reversed(self.records):
            if "train" in rec:
                return rec["train"]
        return {}


def completed(out_dir: str | os.PathLike) -> dict | None:
    """The run's `results.json` when it says the run completed; None otherwise (no file yet,
    or a run that stopped early)."""
    path = os.path.join(os.fspath(out_dir), "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        results = json.load(f)
    return results if results.get("status") == "completed" else None


RUN_FIELDS = (
    "seeds",
    "env_steps",
    "env_steps_per_second",
    "compile_seconds",
    "run_seconds",
    "devices",
    "config",
)
"""What a study keeps of each run's `results.json` beside its own summary (`run_record`)."""


def run_record(results: dict) -> dict:
    """The fields of a run's `results.json` that a study's record of the run repeats: its
    seeds, length, speed, devices and config (`RUN_FIELDS`), and its provenance."""
    return {**{k: results[k] for k in RUN_FIELDS}, "provenance": results.get("provenance")}


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    """The records of a run's `log.jsonl` (one per segment; `None` marks non-finite)."""
    return read_jsonl(os.path.join(os.fspath(out_dir), "log.jsonl"))


def nanmean0(v: np.ndarray) -> np.ndarray:
    """Mean over the segment axis, ignoring NaNs; all-NaN columns give NaN, silently."""
    v = np.asarray(v, dtype=np.float64)
    ok = np.isfinite(v)
    count = ok.sum(axis=0)
    total = np.where(ok, v, 0.0).sum(axis=0)
    mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return np.where(np.any(np.isinf(v), axis=0), np.inf, mean)


# --------------------------------------------------------------------------- progress


def progress_metric(names: Sequence[str]) -> str | None:
    """The metric to show: "return", else "episode_return", else "loss", else the first."""
    for preferred in ("return", "episode_return", "loss"):
        if preferred in names:
            return preferred
    return next(iter(names), None)


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    """A tqdm bar on stderr, refreshed at most every second (every 30 s when not a tty)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="it",
        desc=desc,
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=1.0 if sys.stderr.isatty() else 30.0,
        file=sys.stderr,
    )


def postfix(metric, last_eval, metrics) -> dict[str, str]:
    """The progress bar's postfix: IQM over the grid of the latest eval or train metric."""
    from benchmarks.stats import iqm

    evaluated = dict(last_eval or {})
    name = metric or progress_metric(list(evaluated) or list(metrics))
    if name in evaluated:
        vals = np.asarray(evaluated[name], dtype=np.float64).reshape(-1)
    elif name in metrics:
        vals = nanmean0(metrics[name]).reshape(-1)
    else:
        return {}
    vals = vals[np.isfinite(vals)]
    return {name: f"{iqm(vals):.4g}" if vals.size else "nan"}


# --------------------------------------------------------------------------- results.json


def write_results(out_dir: str, results: dict) -> None:
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


# --------------------------------------------------------------------------- curve.png


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


def plot_curve(out_dir, records, grid, unit_name, metric, algo_name) -> None:
    """Writes `out_dir/curve.png`: `metric` against `unit_name`, a line per sweep point."""
    from benchmarks import plots

    names_eval = {n for r in records for n in r.get("eval", {})}
    names_train = {n for r in records for n in r.get("train", {})}
    metric = metric or progress_metric(sorted(names_eval)) or progress_metric(sorted(names_train))
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
