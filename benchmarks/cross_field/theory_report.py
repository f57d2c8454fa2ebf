"""The theory part of the cross-field report: the map of `benchmarks.cross_field.theory`
with each field's best age placed on it, and what the theory results say, in words."""

from __future__ import annotations

import json
import os

import numpy as np

from benchmarks.cross_field import figures, summary
from benchmarks.cross_field.summary import TARGETS, groups


def figure(path: str, source: str, rows: list[dict]) -> bool:
    """The theory map (`theory.py`'s results file `source`) with each algorithm's best age
    as a line of its learning rate x age; False when the theory results are absent."""
    if not os.path.exists(source):
        return False
    from benchmarks.cross_field import theory

    with open(source) as f:
        results = json.load(f)
    landmarks = list(theory.LANDMARKS) + field_landmarks(rows)
    verdicts = {n: np.asarray(r["measured"]) for n, r in results["problems"].items()}
    theory.plot_map(path, verdicts, landmarks)
    return True


def field_landmarks(rows: list[dict]) -> list:
    """Each algorithm's best age as a theory-map landmark: the line learning rate (the
    median over its rows) x best age."""
    from benchmarks.cross_field import theory

    marks = []
    for key, part in groups(summary.base_age_rows(rows), "field", "algorithm").items():
        best = summary.best_cell(part, TARGETS)
        lrs = [r["learning_rate"] for r in part if r.get("learning_rate")]
        if best is not None and lrs:
            name = f"{figures.name(key[1])} best age {best.age:g}"
            marks.append(theory.Landmark(name, float(np.median(lrs)) * best.age))
    return marks


def lines(source: str, rows: list[dict] = ()) -> list[str]:
    """What the theory results say, in words: per problem, how often the measured and the
    predicted verdicts agree, and at which learning rates and radii they do not."""
    if not os.path.exists(source):
        return ["No theory results (`python -m benchmarks.cross_field run --fields theory`)."]
    with open(source) as f:
        problems = json.load(f)["problems"]
    verdicts = {1: "converges", -1: "diverges"}
    out = []
    for name, p in problems.items():
        measured, predicted = np.asarray(p["measured"]), np.asarray(p["predicted"])
        radius, lrs = np.asarray(p["radius"]), p["learning_rate"]
        a = p["agreement"]
        line = (
            f"{name} ({p['iterations']} updates, {p['seeds']} seeds, median seed): measured and "
            f"predicted verdicts agree at {a['agree']} of the {a['both_decided']} cells where "
            f"both decide ({a['cells']} cells)"
        )
        off = (measured != predicted) & (measured != 0) & (predicted != 0)
        parts, kinds = [], set()  # kinds: the (predicted, measured) pairs of all of them
        for i in sorted(set(np.argwhere(off)[:, 0].tolist())):
            cells = off[i]
            pairs = sorted(
                {
                    (int(x), int(y))
                    for x, y in zip(predicted[i][cells], measured[i][cells], strict=True)
                }
            )
            kinds.update(pairs)
            r = radius[i][cells]
            said = "; ".join(f"predicted {verdicts[x]}, measured {verdicts[y]}" for x, y in pairs)
            parts.append(
                f"{int(cells.sum())} at learning rate {lrs[i]:g} ({said}; radius "
                f"{r.min():.4f} to {r.max():.4f})"
            )
        out.append(line + ("; they differ at " + ", ".join(parts) if parts else "") + ".")
        if (1, -1) in kinds:
            out.append(
                f"On {name} the prediction is of the expected update, the mean of the sampled "
                "ones; it says nothing of their spread, which grows with the learning rate "
                "(a second-moment, not a mean, instability is the likely reading of these "
                "cells: not tested here)."
            )
        for mechanism, ages in p.get("stable_from_age", {}).items():
            stable = [(lr, a) for lr, a in zip(lrs, ages, strict=True) if a is not None]
            unit = [lr * a for lr, a in stable]
            if unit and max(unit) > 0:
                out.append(
                    f"{name}, {mechanism}: the expected iteration is stable from learning rate "
                    f"x age = {min(unit):.2g} to {max(unit):.2g} over the learning rates "
                    f"{', '.join(f'{lr:g}' for lr, _ in stable)}."
                )
    marks = field_landmarks(list(rows))
    if marks:
        out.append(
            "The fields' best ages in that unit (median learning rate x best age; their "
            "optimizers are Adam or RMSProp, whose step is not SGD's, so this places them "
            "roughly): " + "; ".join(f"{m.name}: {m.lr_age:.2g}" for m in marks) + "."
        )
    return out


def source(args) -> str:
    """The theory results the report reads: `--theory`, else the file beside the rows."""
    from benchmarks.cross_field.__main__ import theory_file

    return args.theory or theory_file(args.source)
