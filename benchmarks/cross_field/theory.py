"""Theory beside measurement: where a target network makes training converge.

On both problems the online update, in expectation and in error coordinates e (the toy:
theta - theta*; Baird: the values Phi w, since v_pi = 0), is linear in the online e and
the target e_bar:

    e <- e - lr (A e - B e_bar),

with A = I, B = the toy's A for the toy, and A = K D, B = gamma K D P_pi with K = Phi Phi^T
for Baird (semi-gradient TD(0), S&B eq. 11.9, mapped to values). After the online step of
every N-th update the target takes one step of `stabilizers.periodic(N, mu)`,
e_bar <- mu e_bar + (1 - mu) e. On the joint state [e; e_bar] one update is
J = [[I - lr A, lr B], [0, I]] and the target step E = [[I, 0], [(1 - mu) I, mu I]], so a
period is E J^N and the per-update spectral radius is

    r(lr, N, mu) = rho(E J^N)^(1 / N);

training converges in expectation iff r < 1. A hard copy every N updates is mu = 0
(Fellows et al. 2023's k = N), an EMA is N = 1, no target N = 1, mu = 0 (plain TD:
r = rho(I - lr (A - B))). In Baird's weight space the map has one more eigenvalue, exactly
1, along the null vector u of Phi (the weights drift, the values do not); Phi has rank 7,
so the value coordinates hold every other mode and drop just that one.

The map: x = the target's mean age a in updates (`stabilizers.mean_age`: (N - 1) / 2 for a
hard copy, mu / (1 - mu) for an EMA, 0 for none), y = the learning rate. Mechanisms are
compared at equal age (hard N = 2a + 1, EMA mu = a / (1 + a)). The unit shared with other
fields is lr x a: the stretch of the online params' SGD path (lr per update, the time of
gradient flow) by which the target trails. On Baird the boundary r = 1 is a line of
that unit: an EMA is stable from lr x a = 0.50 (+- 0.02) for every lr from 0.001 to 1,
a hard copy from 0.39 (+- 0.01) for lr up to 0.1 (`stable_from`).

References:
  Fellows, Smith & Whiteson, Why target networks stabilise temporal difference methods,
  ICML 2023. Sutton & Barto, Reinforcement Learning: An Introduction, 2nd ed., 2018, 11.2.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from benchmarks import baird, harness, provenance, toy
from benchmarks.cross_field.common import tracker as _tracker

# --------------------------------------------------------------------------- linear theory


def baird_weight_matrices(config: baird.Config) -> dict[str, np.ndarray]:
    """Baird's expected TD(0) in weight space: w <- w - lr (A w - B w_bar).

    Returns `phi` [7, 8], `d` = I / 7 (the behaviour's state distribution), `p` (pi's
    transitions: every state to the lower one), `a` = Phi^T D Phi (rank 7) and
    `b` = gamma Phi^T D P Phi, all float64.
    """
    discount = config.discount
    phi = baird.features().astype(np.float64)
    n = baird.NUM_STATES
    d = np.eye(n) / n
    p = np.zeros((n, n))
    p[:, baird.LOWER] = 1.0
    return {"phi": phi, "d": d, "p": p, "a": phi.T @ d @ phi, "b": discount * phi.T @ d @ p @ phi}


def baird_matrices(config: baird.Config) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of Baird's expected TD(0) on the values v = Phi w: A = K D, B = gamma K D P."""
    m = baird_weight_matrices(config)
    k = m["phi"] @ m["phi"].T
    return k @ m["d"], config.discount * k @ m["d"] @ m["p"]


def toy_matrices(config: toy.Config) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of the toy on its error theta - theta*: A = I, B = the toy's A (float64)."""
    a, _, _ = toy.problem(config)
    return np.eye(config.dim), a.astype(np.float64)


def period_map(a, b, lr: float, every: int, decay: float) -> np.ndarray:
    """E J^N: the joint [online; target] map over one period of `periodic(every, decay)`."""
    return _target_step(len(a), decay) @ np.linalg.matrix_power(_online_step(a, b, lr), every)


def _online_step(a, b, lr):
    n = len(a)
    return np.block([[np.eye(n) - lr * a, lr * b], [np.zeros((n, n)), np.eye(n)]])


def _target_step(n, decay):
    return np.block([[np.eye(n), np.zeros((n, n))], [(1 - decay) * np.eye(n), decay * np.eye(n)]])


def _scaled_power(j: np.ndarray, n: int) -> tuple[np.ndarray, float]:
    """(x, s) with j^n = x exp(s) and max |x| = 1: a power that cannot overflow."""
    result, log_result = np.eye(len(j)), 0.0
    base, log_base = j, 0.0
    while n:
        if n & 1:
            result, log_result = result @ base, log_result + log_base
            scale = np.abs(result).max()
            result, log_result = result / scale, log_result + math.log(scale)
        n >>= 1
        if n:
            base, log_base = base @ base, 2 * log_base
            scale = np.abs(base).max()
            base, log_base = base / scale, log_base + math.log(scale)
    return result, log_result


def radius(a, b, lr: float, every: int, decay: float) -> float:
    """Per-update spectral radius rho(E J^N)^(1/N) of the joint online / target iteration."""
    x, log_scale = _scaled_power(_online_step(a, b, lr), int(every))
    top = np.abs(np.linalg.eigvals(_target_step(len(a), decay) @ x)).max()
    return 0.0 if top == 0 else math.exp((math.log(top) + log_scale) / every)


def tracker(mechanism: str, age: float) -> tuple[int, float]:
    """(every, decay) for a mechanism at mean age `age`, a hard copy's age rounded to an
    integer (the fine map runs over continuous ages)."""
    return _tracker(mechanism, age, exact=False)


def stable_from(a, b, lr: float, mechanism: str, ages: Sequence[float] | None = None):
    """The youngest age (of `ages`, default 0 and 400 from 0.01 to 10^4) with radius < 1.

    None when no age is stable. A hard copy's age is rounded to an integer.
    """
    ages = np.concatenate([[0.0], np.geomspace(0.01, 1e4, 400)]) if ages is None else ages
    for age in ages:
        if radius(a, b, lr, *tracker(mechanism, age)) < 1:
            return float(round(age)) if mechanism == "hard" else float(age)
    return None


def radius_map(a, b, lrs: Sequence[float], ages: Sequence[float], mechanism: str) -> np.ndarray:
    """`[len(lrs), len(ages)]` per-update radii of `mechanism` at each (lr, mean age)."""
    return np.array([[radius(a, b, lr, *tracker(mechanism, age)) for age in ages] for lr in lrs])


# --------------------------------------------------------------------------- measurement

TOLERANCE = 0.1
"""A run converged when its error ended below TOLERANCE times its initial error, and
diverged when it ended above 1 / TOLERANCE times it or stopped being finite; otherwise it
is undecided (too slow to tell within the run)."""
VERDICTS = {-1: "diverged", 0: "undecided", 1: "converged"}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem of the map: a harness algorithm, its measured grid and its linear theory.

    Attributes:
      algorithm: the algorithm module (`benchmarks.toy`, `benchmarks.baird`).
      config: its config; `learning_rate`, `period_field` and `decay` are swept.
      metric: a train and evaluation metric that is 0 at the fixed point.
      period_field: the config field holding the period N of `periodic(N, decay)`.
      lrs: the measured learning rates.
      ages: the measured mean target ages > 0, integers (a hard copy every 2a + 1 updates
        has age a); age 0 (no target) is measured too.
      iterations: run length of every cell.
      matrices: `config -> (A, B)` of the expected online update (module docstring).
    """

    algorithm: Any
    config: Any
    metric: str
    period_field: str
    lrs: tuple[float, ...]
    ages: tuple[int, ...]
    iterations: int
    matrices: Callable[[Any], tuple[np.ndarray, np.ndarray]]

    def axes(self) -> tuple[list[int], list[float]]:
        """The swept periods and decays: age 0 first, then one per age (hard, EMA)."""
        everys = [1] + [tracker("hard", a)[0] for a in self.ages]
        decays = [0.0] + [tracker("ema", a)[1] for a in self.ages]
        return everys, decays


AGES = (1, 3, 10, 30, 100)
PROBLEMS = {
    # One noisy target of std 0.02 per update: about the noise of the toy's default 32
    # targets of std 0.1 averaged, at a 32nd of the sampling cost.
    "toy": Problem(
        algorithm=toy,
        config=toy.Config(target="periodic_ema", batch_size=1, noise=0.02),
        metric="error",
        period_field="copy_every",
        lrs=(0.1, 0.2, 0.4, 0.8, 1.2, 1.6, 2.4),
        ages=AGES,
        iterations=1_000,
        matrices=toy_matrices,
    ),
    "baird": Problem(
        algorithm=baird,
        config=baird.Config(batch_size=8),
        metric="value_error",
        period_field="every",
        lrs=(0.01, 0.03, 0.1, 0.3, 1.0),
        ages=AGES,
        iterations=20_000,
        matrices=baird_matrices,
    ),
}
"""The measured grids: learning rates x (1 + 5 periods) x (1 + 5 decays) x seeds, the whole
Cartesian product in one harness program per problem (the cells with both a period and
a decay above their neutral values are measured and predicted as well, but not drawn)."""


def initial_error(problem: Problem, seeds: int) -> np.ndarray:
    """`[seeds]`: the metric at initialisation (the harness starts seed s from key(s))."""
    algo, cfg = problem.algorithm, problem.config
    out = []
    for s in range(seeds):
        metrics = algo.evaluate(algo.init(jax.random.key(s), cfg), cfg, jax.random.key(0))
        out.append(float(metrics[problem.metric]))
    return np.asarray(out)


def measure(problem: Problem, seeds: int = 5) -> np.ndarray:
    """Runs the grid through the harness; returns the error ratios `[lr, N, mu, seed]`.

    A ratio is the metric averaged over the last tenth of the run over its initial value;
    `inf` where the run stopped being finite (the harness carries on past it).
    """
    everys, decays = problem.axes()
    sweep = {"learning_rate": list(problem.lrs), problem.period_field: everys, "decay": decays}
    res = harness.run(
        problem.algorithm,
        problem.config,
        iterations=problem.iterations,
        seeds=seeds,
        sweep=sweep,
        segment_length=problem.iterations // 10,
        eval_every=10,
        on_nonfinite="continue",
        progress=False,
        plot=False,
    )
    last = np.asarray(res.results["final_train"][problem.metric], np.float64)
    stopped = np.asarray(res.results["diverged_at_iteration"]) >= 0
    ratio = np.where(stopped | ~np.isfinite(last), np.inf, last / initial_error(problem, seeds))
    return ratio.reshape(len(problem.lrs), len(everys), len(decays), seeds)


def predict(problem: Problem) -> np.ndarray:
    """Per-update radii `[lr, N, mu]` at the measured cells."""
    a, b = problem.matrices(problem.config)
    everys, decays = problem.axes()
    return np.array(
        [[[radius(a, b, lr, n, mu) for mu in decays] for n in everys] for lr in problem.lrs]
    )


def verdict(log_growth: np.ndarray) -> np.ndarray:
    """1 converged, -1 diverged, 0 undecided, from log(final error / initial error)."""
    log_growth = np.nan_to_num(np.asarray(log_growth, np.float64), nan=np.inf)
    bound = -math.log(TOLERANCE)
    return np.where(log_growth <= -bound, 1, np.where(log_growth >= bound, -1, 0))


def measured_verdict(ratio: np.ndarray) -> np.ndarray:
    """The verdict of the median seed of each cell (`ratio`'s last axis is the seed)."""
    with np.errstate(divide="ignore"):
        return verdict(np.log(np.median(ratio, axis=-1)))


def predicted_verdict(radii: np.ndarray, iterations: int) -> np.ndarray:
    """The verdict of the expected dynamics, from r^iterations (transients ignored)."""
    with np.errstate(divide="ignore"):
        return verdict(iterations * np.log(radii))


def agreement(measured: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """Counts of cells where both sides give a verdict, and of those where they agree."""
    both = (measured != 0) & (predicted != 0)
    return {
        "cells": int(measured.size),
        "both_decided": int(both.sum()),
        "agree": int((both & (measured == predicted)).sum()),
    }


# --------------------------------------------------------------------------- the map


class Landmark(NamedTuple):
    """A setting from another field, placed on the map in the shared unit lr x age.

    Attributes:
      name: its label.
      lr_age: learning rate x mean target age (updates).
      lr: its learning rate: a marker at (lr_age / lr, lr); None draws the whole line
        lr x age = lr_age.
      problem: draw it only on this problem's panels (None: on every panel).
    """

    name: str
    lr_age: float
    lr: float | None = None
    problem: str | None = None

    @classmethod
    def at(cls, name: str, lr: float, age: float, problem: str | None = None) -> Landmark:
        return cls(name, lr * age, lr, problem)


LANDMARKS = (Landmark.at("Fellows et al. 2023: k=500 converges", 0.01, 249.5, "baird"),)
"""Drawn by default: Fellows et al. (2023, Fig. 2) report convergence on Baird with sampled
updates at alpha 0.01 from a copy period of 500 (age 249.5)."""


def _zero_position(ages: Sequence[float]) -> float:
    """Where age 0 is drawn on the log age axis: a factor 4 left of the first age."""
    return min(ages) / 4


def _fine_map(problem: Problem, mechanism: str, size: int = 28):
    """(x, lrs, T log r) on a fine grid for the shading; x[0] is age 0 at its position."""
    lo, hi = min(problem.ages), max(problem.ages)
    ages = np.concatenate([[0.0], np.geomspace(lo / 1.8, hi * 3, size)])
    lrs = np.geomspace(min(problem.lrs) / 1.5, max(problem.lrs) * 1.5, size)
    a, b = problem.matrices(problem.config)
    with np.errstate(divide="ignore"):
        growth = problem.iterations * np.log(radius_map(a, b, lrs, ages, mechanism))
    x = np.where(ages == 0, _zero_position(problem.ages), ages)
    return x, lrs, growth


def _draw_panel(ax, problem: Problem, mechanism: str, measured: np.ndarray) -> None:
    x, lrs, growth = _fine_map(problem, mechanism)
    bound = -math.log(TOLERANCE)
    levels = [-np.inf, -bound, 0.0, np.inf]
    colors = ["#9ecae1", "#deebf7", "#fde0dd"]
    ax.contourf(x, lrs, np.clip(growth, -1e6, 1e6), levels=levels, colors=colors)
    ax.contour(x, lrs, growth, levels=[0.0], colors="k", linewidths=1.2)
    zero = _zero_position(problem.ages)
    ax.axvline(zero * 2, color="0.5", lw=0.6, ls=":")
    ages = (0,) + tuple(problem.ages)
    cells = measured[:, :, 0] if mechanism == "hard" else measured[:, 0, :]
    style = {
        1: dict(marker="o", color="#08519c", fillstyle="full"),
        0: dict(marker="o", color="0.35", fillstyle="none"),
        -1: dict(marker="x", color="#cb181d"),
    }
    for i, lr in enumerate(problem.lrs):
        for j, age in enumerate(ages):
            ax.plot(age or zero, lr, ls="", ms=7, mew=1.5, **style[int(cells[i, j])])
    for product in (0.1, 1.0, 10.0):  # guides in the shared unit
        ax.plot(x[1:], product / x[1:], color="0.6", lw=0.6, ls="--")
        top = product / lrs[-1]
        if x[1] < top < x[-1]:
            ax.annotate(
                f"{product:g}",
                (top, lrs[-1]),
                fontsize=7,
                color="0.4",
                xytext=(3, -10),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(lrs[0], lrs[-1])
    ticks = [zero] + [a for a in problem.ages]
    ax.set_xticks(ticks, ["0"] + [str(a) for a in problem.ages])
    ax.minorticks_off()


def _draw_landmarks(ax, landmarks: Sequence[Landmark], name: str) -> set[str]:
    """Draws the landmarks that fall on the panel; returns their names."""
    x_lo, x_hi = ax.get_xlim()
    drawn = set()
    for mark in landmarks:
        if mark.problem not in (None, name):
            continue
        if mark.lr is not None:
            ax.plot(mark.lr_age / mark.lr, mark.lr, marker="*", ms=13, color="#ff7f00", mec="k")
            ax.annotate(
                mark.name,
                (mark.lr_age / mark.lr, mark.lr),
                fontsize=7,
                ha="right",
                xytext=(-4, 7),
                textcoords="offset points",
            )
            drawn.add(mark.name)
        else:
            y_lo, y_hi = ax.get_ylim()
            xs = np.geomspace(x_lo * 2, x_hi, 60)
            xs = xs[(mark.lr_age / xs >= y_lo) & (mark.lr_age / xs <= y_hi)]
            if xs.size == 0:
                continue
            ax.plot(xs, mark.lr_age / xs, color="#ff7f00", lw=1.4)
            middle = xs[xs.size // 2]
            ax.annotate(
                mark.name,
                (middle, mark.lr_age / middle),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
            drawn.add(mark.name)
    return drawn


def plot_map(
    path: str,
    verdicts: dict[str, np.ndarray],
    landmarks: Sequence[Landmark] = LANDMARKS,
    problems: dict[str, Problem] | None = None,
) -> list[str]:
    """Writes the map: a row per problem, a panel per mechanism (hard copy, EMA).

    Args:
      path: output PNG.
      verdicts: problem name -> `measured_verdict` of its grid, `[lr, N, mu]`.
      landmarks: settings from other fields, drawn in the shared unit lr x age.
      problems: name -> `Problem` (default `PROBLEMS`).

    Returns:
      the names of the landmarks that fall on no panel (noted under the map).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    problems = problems or PROBLEMS
    fig, axes = plt.subplots(len(verdicts), 2, figsize=(10, 4.4 * len(verdicts)), squeeze=False)
    titles = {"hard": "hard copy every 2a + 1 updates", "ema": "EMA, decay a / (1 + a)"}
    drawn: set[str] = set()
    for row, (name, measured) in zip(axes, verdicts.items(), strict=True):
        problem = problems[name]
        for ax, mechanism in zip(row, ("hard", "ema"), strict=True):
            _draw_panel(ax, problem, mechanism, measured)
            drawn |= _draw_landmarks(ax, landmarks, name)
            ax.set_title(f"{name}: {titles[mechanism]}", fontsize=10)
            ax.set_xlabel("target mean age a (updates); 0: no target")
            ax.set_ylabel("learning rate")
    handles = [
        Patch(color="#9ecae1", label="predicted: converges within the run"),
        Patch(color="#deebf7", label="predicted: stable (radius < 1), slower"),
        Patch(color="#fde0dd", label="predicted: diverges (radius > 1)"),
        Line2D([], [], marker="o", ls="", color="#08519c", label="measured: converged"),
        Line2D([], [], marker="o", ls="", color="0.35", fillstyle="none", label="undecided"),
        Line2D([], [], marker="x", ls="", color="#cb181d", label="measured: diverged"),
        Line2D([], [], color="0.6", ls="--", lw=0.6, label="lr x a = 0.1, 1, 10"),
    ]
    # landmarks of these problems that fall on no panel, noted under the map
    off_map = [m for m in landmarks if m.name not in drawn and m.problem in (None, *verdicts)]
    bottom, lift = 0.06, 0.0
    if off_map:
        note = "; ".join(f"{m.name}: lr x a = {m.lr_age:.2g}" for m in off_map)
        fig.text(0.5, 0.005, f"off the map: {note}", ha="center", fontsize=8, wrap=True)
        bottom, lift = 0.085, 0.025
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, lift),
        ncol=4,
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, bottom, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [m.name for m in off_map]


# --------------------------------------------------------------------------- the study


def study(seeds: int = 5, problems: dict[str, Problem] | None = None) -> dict[str, Any]:
    """Measures and predicts every problem's grid; returns the results, JSON-ready."""
    out = {}
    for name, problem in (problems or PROBLEMS).items():
        started = time.perf_counter()
        ratio = measure(problem, seeds)
        seconds = time.perf_counter() - started
        radii = predict(problem)
        matrices = problem.matrices(problem.config)
        measured = measured_verdict(ratio)
        predicted = predicted_verdict(radii, problem.iterations)
        everys, decays = problem.axes()
        out[name] = {
            "config": harness.jsonable(problem.config),
            "iterations": problem.iterations,
            "seeds": seeds,
            "learning_rate": list(problem.lrs),
            "ages": list(problem.ages),
            problem.period_field: everys,
            "decay": decays,
            "error_ratio": harness.jsonable(ratio),
            "radius": harness.jsonable(radii),
            "measured": measured.tolist(),
            "predicted": predicted.tolist(),
            "agreement": agreement(measured, predicted),
            "stable_from_age": {
                m: [stable_from(*matrices, lr, m) for lr in problem.lrs] for m in ("hard", "ema")
            },
            "measure_seconds": seconds,
        }
    return out


def parse_landmark(text: str) -> Landmark:
    """`"name=lr_age"` (a line) or `"name=lr:age"` (a marker), optionally `"...@problem"`."""
    name, _, value = text.rpartition("=")
    value, _, problem = value.partition("@")
    if not name or not value:
        raise ValueError(f"a landmark is name=lr_age or name=lr:age; got {text!r}")
    if ":" in value:
        lr, age = (float(v) for v in value.split(":"))
        return Landmark.at(name, lr, age, problem or None)
    return Landmark(name, float(value), None, problem or None)


RESULTS = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    "docs",
    "results",
    "cross_field_theory.json",
)


def agreement_line(name: str, problem: dict[str, Any]) -> str:
    """One problem's result of `study` in a line: agreement and measuring time."""
    a = problem["agreement"]
    return (
        f"{name}: measured and predicted agree at {a['agree']} of {a['both_decided']} "
        f"decided cells ({problem['measure_seconds']:.0f} s)"
    )


def run(
    path: str,
    seeds: int = 5,
    landmarks: Sequence[Landmark] = LANDMARKS,
    map_path: str | None = None,
    layout: Any = None,
) -> dict[str, Any]:
    """Measures and predicts every problem (`study`), writes the results with their
    provenance to `path` (and the bare map to `map_path`); returns them."""
    started = provenance.now()
    problems = study(seeds)
    if map_path:
        plot_map(map_path, {n: np.asarray(r["measured"]) for n, r in problems.items()}, landmarks)
    results = {
        "problems": problems,
        "tolerance": TOLERANCE,
        "landmarks": [m._asdict() for m in landmarks],
        "cpu_layout": layout,
        "provenance": provenance.provenance(started),
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    return results


def main(argv: list[str] | None = None) -> int:
    from benchmarks import cli, cpu_layout

    parser = cli.Parser(
        prog="python -m benchmarks.cross_field.theory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", default=RESULTS, help="results file (%(default)s)")
    parser.add_argument("--map", default=None, help="also draw the bare map to this PNG")
    parser.add_argument("--seeds", type=cli.positive_int, default=5)
    parser.add_argument(
        "--landmark",
        action="append",
        default=[],
        help="name=lr_age or name=lr:age[@problem] (repeatable): a setting from another field",
    )
    args = parser.parse_args(argv)
    layout = cpu_layout.configure()
    try:
        landmarks = LANDMARKS + tuple(parse_landmark(t) for t in args.landmark)
    except ValueError as error:
        parser.error(f"argument --landmark: {error}")
    results = run(args.json, args.seeds, landmarks, args.map, layout)
    for name, r in results["problems"].items():
        print(agreement_line(name, r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
