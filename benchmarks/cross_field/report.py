"""The cross-field report: figures and `docs/cross_field.md`, from the rows file alone.

    python -m benchmarks.cross_field report [--from FILE] [--out DIR] [--theory DIR]

Every number on the page is computed here from the rows (`summary`); every verdict is
worded by a rule in this module (intervals that overlap or not, a difference whose
interval holds zero or not). It works with any subset of the fields: a question whose rows
are absent says so.
"""

from __future__ import annotations

import importlib
import math
import os

import numpy as np

from benchmarks.cross_field import common, figures, summary, theory_report
from benchmarks.cross_field.summary import TARGETS, Estimate, estimate, groups

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIGURES = {
    "panels": "cross_field_panels.png",
    "summary": "cross_field_summary.png",
    "partner": "cross_field_partner.png",
    "scaling": "cross_field_scaling.png",
    "theory": "cross_field_theory.png",
}
NO_TARGET = {"byol": "no target (SimSiam: predictor and stop-gradient alone)"}


def _label(key) -> str:
    field, algorithm = key
    return f"{field} / {figures.name(algorithm)}"


# --------------------------------------------------------------------------- answers


def answer_equal_age(rows: list[dict]) -> list[str]:
    """(1) Hard copy against EMA at equal mean age, per algorithm: they agree at an age when
    the 95% interval of their IQM difference holds 0."""
    lines, agree_all, total = [], 0, 0
    for key, part in groups(summary.base_age_rows(rows), "field", "algorithm").items():
        hard, ema = summary.cell(part, "hard"), summary.cell(part, "ema")
        ages = sorted({r["age"] for r in hard} & {r["age"] for r in ema})
        if not ages:
            continue
        diffs = {
            a: summary.difference(summary.cell(hard, "hard", a), summary.cell(ema, "ema", a))
            for a in ages
        }
        agree = [a for a, d in diffs.items() if d.low <= 0 <= d.high]
        a = max(ages, key=lambda age: abs(diffs[age].value))
        h, e = estimate(summary.cell(hard, "hard", a)), estimate(summary.cell(ema, "ema", a))
        agree_all, total = agree_all + len(agree), total + len(ages)
        lines.append(
            f"{_label(key)}: hard minus EMA holds 0 in its 95% interval at {len(agree)} of "
            f"{len(ages)} ages; the largest gap is at age {a:g}: hard {h.text()}, EMA "
            f"{e.text()}, difference {diffs[a].text()}."
        )
    if not lines:
        return ["No algorithm has both a hard copy and an EMA at a common age."]
    verdict = (
        "hard copy and EMA give the same result within these intervals"
        if agree_all == total
        else f"hard copy and EMA differ at {total - agree_all} of them"
    )
    return lines + [
        f"Over all algorithms: agreement at {agree_all} of {total} (algorithm, age) pairs; at "
        f"equal mean age {verdict}."
    ]


def _ends(part: list[dict], ages: list[float]) -> dict[float, Estimate]:
    """The estimates at the youngest and the oldest age (best mechanism there)."""
    out = {}
    for age in (ages[0], ages[-1]):
        cells = [summary.cell(part, m, age) for m in ("none",) + TARGETS]
        out[age] = max((estimate(c) for c in cells if c), key=lambda e: e.value)
    return out


def answer_best_age(rows: list[dict]) -> list[str]:
    """(2) Is there an interior best age, and does it move with run length or learning rate?"""
    lines = []
    age_rows = summary.axis_rows(rows, "age")
    for key, part in groups(summary.base_age_rows(rows), "field", "algorithm").items():
        best, ages = summary.best_cell(part), summary.ages_of(part)
        if best is None or len(ages) < 3:
            continue
        ends = _ends(part, ages)
        if ages[0] < best.age < ages[-1]:
            clear = all(best.estimate.low > e.high for e in ends.values())
            verdict = "an interior best age" + (
                ", clear of both ends" if clear else ", within the interval of an end"
            )
        else:
            verdict = "no interior best age (the best is at an end of the axis)"
        ends_text = "; ".join(f"age {a:g}: {e.text()}" for a, e in ends.items())
        lines.append(
            f"{_label(key)}: best at age {best.age:g} ({best.mechanism}, "
            f"{best.age / best.run_updates:.2g} of a {best.run_updates:g}-update run): "
            f"{best.estimate.text()}; {ends_text}: {verdict}."
        )
        lines += _moves(key, [r for r in age_rows if (r["field"], r["algorithm"]) == key])
    return lines or ["No algorithm has three or more ages on the age axis."]


def _moves(key, part: list[dict]) -> list[str]:
    """Best EMA (or no-target) age of each variant of one algorithm's sweep."""
    variants = groups(part, "variant")
    if len(variants) < 2:
        return []
    bests = {}
    for (variant,), rs in variants.items():
        best = summary.best_cell(rs, ("none", "ema"))
        if best is not None:
            lr = np.median([r.get("learning_rate") or np.nan for r in rs])
            bests[variant] = (best, lr)
    base, _ = bests.pop("base", (None, None))
    if base is None:
        return []
    out = []
    for variant, (best, lr) in bests.items():
        moved = "moves" if best.age != base.age else "stays"
        out.append(
            f"{_label(key)}, {variant} (run of {best.run_updates:g} updates, learning rate "
            f"{lr:.2g}): best EMA age {best.age:g} ({best.age / best.run_updates:.2g} of the "
            f"run) against {base.age:g} ({base.age / base.run_updates:.2g}) in the base "
            f"sweep: the best age {moved}."
        )
    return out


def answer_need_target(rows: list[dict]) -> list[str]:
    """(3) Which algorithms need a target, and where normalization replaces it."""
    lines = []
    for key, part in groups(summary.base_age_rows(rows), "field", "algorithm").items():
        none, best = summary.cell(part, "none", 0.0), summary.best_cell(part, TARGETS)
        if not none or best is None:
            continue
        target = summary.cell(part, best.mechanism, best.age)
        d = summary.difference(target, none)
        if d.low > 0:
            verdict = "needs a target"
        elif d.high < 0:
            verdict = "does better without a target"
        else:
            verdict = "shows no difference within the interval"
        nt = NO_TARGET.get(key[1], "no target")
        lines.append(
            f"{_label(key)} {verdict}: the best target ({best.mechanism}, age {best.age:g}) "
            f"minus {nt} = {d.text()}; failures {estimate(target).failures}/{len(target)} with "
            f"the target, {estimate(none).failures}/{len(none)} without."
        )
        lines += _normalization(key, part, none, target, d)
    return lines or ["No algorithm has both age 0 and a target on the age axis."]


NORMALIZERS = {"layernorm": "LayerNorm", "crossq": "CrossQ's batch renormalization"}
"""Mechanism names of normalization without a target (age 0), and how the page says them."""


def _normalization(key, part, none, target, needed: Estimate) -> list[str]:
    lines = []
    for mechanism, name in NORMALIZERS.items():
        normed = summary.cell(part, mechanism, 0.0)
        if not normed:
            continue
        vs_none = summary.difference(normed, none)
        vs_target = summary.difference(normed, target)
        if needed.low <= 0:
            verdict = "there is no target to replace here"
            if vs_target.low > 0 and vs_none.low >= 0:
                verdict += f", yet {name} without one beats the best target"
            elif vs_target.high < 0:
                verdict += f", and {name} without one is below the best target"
        elif vs_target.high >= 0:
            verdict = f"{name} replaces the target (not below it within the interval)"
        else:
            verdict = f"{name} does not replace the target"
        lines.append(
            f"{_label(key)}, {name} without a target: {estimate(normed).text()}; minus no "
            f"target {vs_none.text()}, minus the best target {vs_target.text()}: {verdict}."
        )
    return lines


def answer_scaling(rows: list[dict]) -> list[str]:
    """(4) Does the EMA scaling rule hold, field by field?"""
    lines, fields = [], set()
    for key, part in groups(summary.axis_rows(rows, "scaling"), "field", "algorithm").items():
        reference = [r for r in part if r["variant"] == "reference"]
        ks = sorted({r["k"] for r in part} - {1.0})
        if not reference or not ks:
            continue
        fields.add(key[0])
        held, drifted, parts = 0, 0, []
        for k in ks:
            rule = [r for r in part if r["variant"] == "rule" and r["k"] == k]
            control = [r for r in part if r["variant"] == "control" and r["k"] == k]
            dr = summary.difference(rule, reference)
            dc = summary.difference(control, reference)
            held += dr.low <= 0 <= dr.high
            drifted += not (dc.low <= 0 <= dc.high)
            parts.append(f"k = {k:g}: rule {dr.text()}, control {dc.text()}")
        lines.append(
            f"{_label(key)}, score minus k = 1's ({estimate(reference).text()}): "
            + "; ".join(parts)
            + f". The rule keeps k = 1's score within its interval at {held} of {len(ks)} "
            f"factors; the control departs from it at {drifted} of {len(ks)}."
        )
    if not lines:
        return ["No scaling rows."]
    if len(fields) < 2:
        lines.append(
            f"Only {', '.join(sorted(fields))} ran the test here; across fields it needs "
            "the other fields' scaling rows."
        )
    return lines


def answer_partner(rows: list[dict]) -> list[str]:
    """(5) Slowing a partner (TD3) and speeding one up (the VAE): the same knob?

    Per algorithm, the largest ratio against ratio 1: more updates for the lagging partner
    help when the score rises beyond its interval or the failure rate falls by half the runs
    or more, hurt when the reverse; the two are the same knob when they move alike."""
    lines, effect = [], {}
    words = {1: "helps", -1: "hurts", 0: "changes neither the score nor the failures"}
    for (algorithm,), part in groups(summary.axis_rows(rows, "partner"), "algorithm").items():
        points = summary.partner_points(part)
        if len(points) < 2:
            continue
        one = min(points, key=lambda p: abs(math.log(p.ratio)))
        top = max(points, key=lambda p: p.ratio)
        best = max(points, key=lambda p: p.estimate.value)
        d = summary.difference(top.rows, one.rows)
        fails = top.estimate.failure_rate - one.estimate.failure_rate
        rho = summary.trend([(math.log(p.ratio), p.estimate.value) for p in points])
        up, down = d.low > 0 or fails <= -0.5, d.high < 0 or fails >= 0.5
        effect[algorithm] = 0 if up == down else (1 if up else -1)
        lines.append(
            f"{figures.name(algorithm)}: at ratio {one.ratio:.3g} ({one.setting}) "
            f"{one.estimate.text()}, {one.estimate.failures}/{one.estimate.n} failed; at the "
            f"largest ratio {top.ratio:.3g} ({top.setting}) {top.estimate.text()}, "
            f"{top.estimate.failures}/{top.estimate.n} failed (difference {d.text()}); best "
            f"{best.setting}; rank correlation of the score with the log ratio {rho:+.2f}: "
            f"more updates for the lagging partner {words[effect[algorithm]]}."
        )
    if not lines:
        return ["No partner-speed rows."]
    if {"td3", "vae"} <= set(effect):
        a, b = effect["td3"], effect["vae"]
        if a == b:
            verdict = f"in both, more updates for the lagging partner {words[a]}: the same "
            verdict += "knob seen from two sides." if a else "knob, with no effect here."
        else:
            verdict = (
                f"more updates for the lagging partner {words[a]} in TD3 and {words[b]} in the "
                "VAE: not the same knob here."
            )
        lines.append(verdict[0].upper() + verdict[1:])
    else:
        missing = sorted({"td3", "vae"} - set(effect))
        lines.append(f"Rows of {', '.join(missing)} are absent: the comparison needs both.")
    return lines


def _papers_byol(part: list[dict]) -> str | None:
    none = summary.cell(part, "none", 0.0)
    if not none:
        return None
    est = estimate(none)
    agrees = est.failure_rate >= 0.5
    return (
        "BYOL without a target (tau = 0) collapses (Grill et al. 2020, Table 5a: 0.3% top-1): "
        + ("the data agree" if agrees else "the data disagree")
        + f": here {est.failures}/{est.n} runs failed, normalized score {est.text()} (with "
        "the predictor and stop-gradient, as SimSiam reports)."
    )


def _papers_ct(part: list[dict]) -> str | None:
    none, schedule = summary.cell(part, "none", 0.0), summary.cell(part, "schedule")
    if not none or not schedule:
        return None
    d = summary.difference(none, schedule)
    verdict = "agree" if d.low > 0 else ("disagree" if d.high < 0 else "cannot tell")
    text = (
        "Removing the teacher's EMA (mu(k) -> 0) improves consistency training (Song & "
        f"Dhariwal 2023): the data {verdict}: no teacher minus the mu(k) teacher = {d.text()}"
    )
    best = summary.best_cell(part, ("ema",))
    if best is not None:
        ema = summary.difference(summary.cell(part, "ema", best.age), none)
        text += f"; the best constant EMA (age {best.age:g}) minus no teacher = {ema.text()}"
    return text + "."


def _papers_vae(part: list[dict]) -> str | None:
    points = summary.partner_points(part)
    if len(points) < 2:
        return None
    basic, fastest = points[0], points[-1]
    agrees = fastest.estimate.failure_rate < basic.estimate.failure_rate
    return (
        "Aggressive inference training avoids the posterior collapse of basic training (He "
        f"et al. 2019): the data {'agree' if agrees else 'disagree'}: collapsed "
        f"{basic.estimate.failures}/{basic.estimate.n} at {basic.setting}, "
        f"{fastest.estimate.failures}/{fastest.estimate.n} at {fastest.setting}."
    )


def answer_papers(rows: list[dict]) -> list[str]:
    """The papers' claims that these rows test, each with the rows' verdict."""
    checks = {"byol": _papers_byol, "ct": _papers_ct}
    lines = []
    for (algorithm,), part in groups(summary.base_age_rows(rows), "algorithm").items():
        if algorithm in checks:
            lines.append(checks[algorithm](part))
    vae = [r for r in summary.axis_rows(rows, "partner") if r["algorithm"] == "vae"]
    lines.append(_papers_vae(vae) if vae else None)
    return [line for line in lines if line] or ["No rows test a claim listed here."]


ANSWERS = (
    ("1. At equal mean age, do hard copy and EMA give the same result?", answer_equal_age),
    ("2. Is there an interior best age, and does it move?", answer_best_age),
    ("3. Which algorithms need a target; where does normalization replace it?", answer_need_target),
    ("4. Does the EMA scaling rule hold across fields?", answer_scaling),
    ("5. Are slowing a partner and speeding one up the same knob?", answer_partner),
    ("Against the papers", answer_papers),
)


# --------------------------------------------------------------------------- tables


def best_age_table(rows: list[dict]) -> list[str]:
    """The best age per algorithm, overall and per mechanism, also as a fraction of the run."""
    out = [
        "| algorithm | best (mechanism, age) | fraction of the run | normalized | best EMA age "
        "| best hard age | no target | run (updates) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, part in groups(summary.base_age_rows(rows), "field", "algorithm").items():
        best = summary.best_cell(part)
        if best is None:
            continue
        ema, hard = summary.best_cell(part, ("ema",)), summary.best_cell(part, ("hard",))
        none = summary.cell(part, "none", 0.0)
        out.append(
            f"| {_label(key)} | {best.mechanism}, {best.age:g} | "
            f"{best.age / best.run_updates:.2g} | {best.estimate.text()} | "
            f"{_age(ema)} | {_age(hard)} | {estimate(none).text() if none else '-'} | "
            f"{best.run_updates:g} |"
        )
    return out


def _age(best) -> str:
    return "-" if best is None else f"{best.age:g} ({best.estimate.text()})"


def normalization_table(rows: list[dict]) -> list[str]:
    out = [
        "| algorithm | score | floor (untrained, median) | ceiling | runs | failed |",
        "|---|---|---|---|---|---|",
    ]
    for (field, algorithm), part in groups(rows, "field", "algorithm").items():
        floors = [r["floor"] for r in part if r.get("floor") is not None]
        ceilings = {r.get("ceiling") for r in part} - {None}
        ceiling = ", ".join(f"{c:.4g}" for c in sorted(ceilings)) or "-"
        floor = f"{np.median(floors):.4g}" if floors else "-"
        failed = sum(bool(r["failed"]) for r in part)
        out.append(
            f"| {_label((field, algorithm))} | {part[0]['score_name']} | {floor} | {ceiling} | "
            f"{len(part)} | {failed} |"
        )
    return out


def programs_table(programs: dict) -> list[str]:
    out = [
        "| program | cells x seeds | iterations | wall s | CPU s | compile s | trained at |",
        "|---|---|---|---|---|---|---|",
    ]
    total = [0.0, 0.0]
    for name, p in programs.items():
        wall, cpu = p.get("wall_seconds", float("nan")), p.get("cpu_seconds", float("nan"))
        total = [total[0] + np.nan_to_num(wall), total[1] + np.nan_to_num(cpu)]
        out.append(
            f"| {name} | {p['cells']} x {p['seeds']} | {p['iterations']} | {wall:.0f} | "
            f"{cpu:.0f} | {p.get('compile_seconds', float('nan')):.0f} | "
            f"{str(p.get('commit') or '-')[:9]} |"
        )
    out.append(f"| all | | | {total[0]:.0f} | {total[1]:.0f} | | |")
    return out


# --------------------------------------------------------------------------- the page


def expected_programs(quick: bool) -> list[str]:
    """Every program the study defines at this size, as "field/program"."""
    from benchmarks.cross_field.__main__ import FIELD_MODULES

    names = []
    for field, module_name in FIELD_MODULES.items():
        module = importlib.import_module(module_name)
        names += [f"{field}/{p.name}" for p in module.programs(quick)]
    return names


def completeness(data: dict, expected: list[str]) -> list[str]:
    """A line that says which of the study's programs the rows file does not hold yet."""
    missing = [name for name in expected if name not in data.get("programs", {})]
    if not missing:
        return ["Every program of the study is in the rows file.", ""]
    return [
        f"**Incomplete:** {len(missing)} of the study's {len(expected)} programs are not in "
        f"the rows file yet ({', '.join(missing)}); what is shown uses only the rows "
        "present. `python -m benchmarks.cross_field run` trains them.",
        "",
    ]


def page(data: dict, drawn: dict[str, bool], figure_dir: str, expected=None, theory=()) -> str:
    """The Markdown page; `expected` names the study's programs (see `completeness`),
    `theory` the lines of `theory_report.lines`."""
    rows, prov = data["rows"], data.get("provenance", {})
    study = data.get("study", {})
    kind = "quick" if study.get("quick") else "full"
    fields = sorted({r["field"] for r in rows})
    text = [
        "# The cross-field study: one target network, one axis, several fields",
        "",
        "The same mechanism, a target network that trails the network it trains, measured "
        "on one axis in every field: the target's mean age in updates of the network it "
        "follows (a hard copy every N updates: (N - 1) / 2; an EMA of decay d: d / (1 - d); "
        "no target: 0). Every score is normalized between the untrained network (0) and a "
        "ceiling measured in the same study (1). Generated by `python -m "
        "benchmarks.cross_field report` from the rows file; nothing on this page is typed "
        "by hand.",
        "",
        f"Study: {kind}, {study.get('seeds', '?')} seeds per cell, fields: "
        f"{', '.join(fields)}; {len(rows)} rows. Commit {prov.get('commit', '?')}"
        f"{' (dirty)' if prov.get('dirty') else ''}, {prov.get('device_kind', '?')} "
        f"x {prov.get('device_count', '?')}, {prov.get('started_utc', '?')} to "
        f"{prov.get('ended_utc', '?')}.",
        "",
    ]
    by_field = data.get("provenance_by_field", {})
    runs = {(p.get("commit"), p.get("command"), p.get("started_utc")) for p in by_field.values()}
    if len(runs) > 1:
        text += ["Each field's rows were written by its own run:", ""]
        for field, p in sorted(by_field.items()):
            end = p.get("commit_at_end")
            moved = f", HEAD at the end {end[:9]}" if end and end != p.get("commit") else ""
            text.append(
                f"- {field}: commit {str(p.get('commit', '?'))[:9]}"
                f"{' (dirty)' if p.get('dirty') else ''}{moved}, `{p.get('command', '?')}`, "
                f"{p.get('started_utc', '?')} to {p.get('ended_utc', '?')}"
            )
        text.append("")
    text += [
        "Run it: `python -m benchmarks.cross_field run --quick --out runs/xf_quick` (3 seeds, "
        "small budgets, made to finish within 20 minutes on 2 CPU cores) or "
        "`python -m benchmarks.cross_field run` (the full study, resumable: each program "
        "checkpoints in `runs/cross_field/`); "
        "then `python -m benchmarks.cross_field report` (or `report --from "
        "runs/xf_quick/cross_field.json --out runs/xf_quick`).",
        "",
    ]
    if expected is not None:
        text += completeness(data, expected)
    captions = {
        "panels": "Normalized score against the target's mean age, per algorithm (IQM and "
        "95% bootstrap interval over runs; triangles: below -1); beside it, the fraction of "
        "runs that failed.",
        "summary": "Every algorithm on one normalized axis (EMA solid, hard copy dashed).",
        "partner": "The partner-speed axis: updates of the lagging partner per update of "
        "the other.",
        "scaling": "The EMA scaling rule: batch x k, steps / k, decay d^k (rule) or d (control).",
        "theory": "Theory beside measurement (`benchmarks.cross_field.theory`), with each "
        "algorithm's best age drawn as the line learning rate x age (Adam's step is not "
        "SGD's: a rough placement).",
    }
    text += ["## Figures", ""]
    for key, file in FIGURES.items():
        if drawn.get(key):
            text += [f"![{key}]({os.path.join(figure_dir, file)})", "", captions[key], ""]
    text += ["## Best age per algorithm", ""] + best_age_table(rows) + [""]
    text += ["## Answers", ""]
    for question, answer in ANSWERS:
        text += [f"### {question}", ""] + [f"- {line}" for line in answer(rows)] + [""]
    text += ["## Theory beside measurement", ""] + [f"- {x}" for x in theory]
    text += ["", "## Normalization and failures", ""] + normalization_table(rows) + [""]
    for field, definition in sorted(data.get("definitions", {}).items()):
        text += [f"- {field}: {definition}"]
    text += ["", "## Programs and times", ""] + programs_table(data.get("programs", {}))
    return "\n".join(text) + "\n"


def main(args) -> int:
    if not os.path.exists(args.source):
        raise SystemExit(f"no rows file at {args.source}: run the study first (see --help)")
    data = common.read(args.source)
    out = args.out or os.path.join(ROOT, "docs")
    figure_dir = "figures" if args.out is None else "."
    os.makedirs(os.path.join(out, figure_dir), exist_ok=True)
    rows = data["rows"]
    target = lambda key: os.path.join(out, figure_dir, FIGURES[key])  # noqa: E731
    drawn = {
        "panels": figures.age_panels(target("panels"), rows),
        "summary": figures.summary_figure(target("summary"), rows),
        "partner": figures.partner_figure(target("partner"), rows),
        "scaling": figures.scaling_figure(target("scaling"), rows),
        "theory": theory_report.figure(target("theory"), theory_report.source(args), rows),
    }
    path = os.path.join(out, "cross_field.md")
    with open(path, "w") as f:
        expected = expected_programs(bool(data.get("study", {}).get("quick")))
        theory = theory_report.lines(theory_report.source(args), rows)
        f.write(page(data, drawn, figure_dir, expected, theory))
    print(f"[cross_field] report: {path}")
    return 0
