"""The cross-field report's figures, drawn from `summary` estimates (matplotlib, Agg).

Ages are drawn on a log axis with age 0 (no target) placed a factor 4 left of the
youngest positive age, behind a dotted break. Normalized scores below the plotted range
are drawn at its bottom edge as downward triangles.
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks import stats
from benchmarks.cross_field import summary

STYLE = {
    "none": dict(color="k", marker="s", label="no target (age 0)"),
    "hard": dict(color="#1f77b4", marker="o", ls="-", label="hard copy"),
    "ema": dict(color="#ff7f0e", marker="o", ls="-", label="EMA"),
    "schedule": dict(color="#9467bd", marker="*", ms=13, label="own schedule (mean age)"),
    "layernorm": dict(color="#2ca02c", marker="D", label="LayerNorm, no target"),
    "layernorm_ema": dict(color="#2ca02c", marker="^", ls="--", label="LayerNorm + EMA"),
    "layernorm_schedule": dict(color="#2ca02c", marker="*", ms=13, label="LayerNorm + schedule"),
    "crossq": dict(color="#d62728", marker="D", label="CrossQ (batch renorm), no target"),
    "crossq_ema": dict(color="#d62728", marker="^", ls="--", label="CrossQ + EMA"),
}
BOTTOM = -1.0
"""The lowest normalized score drawn (below: a triangle at the edge)."""
NAMES = {
    "ct": "CT",
    "vae": "VAE",
    "byol": "BYOL",
    "moco_v3": "MoCo v3",
    "td3": "TD3",
    "dqn": "DQN",
    "dqn_minatar": "DQN (MinAtar)",
    "sac": "SAC",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid_ages(mechanisms: dict) -> list[float]:
    """The measured ages of the axis (the reference schedule's mean age apart)."""
    references = ("schedule", "layernorm_schedule")
    return sorted({a for m, pts in mechanisms.items() if m not in references for a, _ in pts})


def zero_position(ages) -> float:
    positive = [a for a in ages if a > 0]
    return (min(positive) if positive else 1.0) / 4


def name(algorithm: str) -> str:
    return NAMES.get(algorithm, algorithm)


def _statistic(rows) -> str:
    """ "IQM" or "mean": what the estimates of cells of these rows are."""
    cells = summary.groups(rows, "program", "mechanism", "age", "k", "variant")
    return stats.label(min(len(c) for c in cells.values()))


def _ylim(estimates) -> tuple[float, float]:
    values = [v for e in estimates for v in (e.low, e.high)]
    lo = max(BOTTOM, min(values, default=0.0) - 0.05)
    return min(lo, -0.05), max(1.05, max(values, default=1.0) + 0.05)


def _draw_line(ax, points, style, zero, bottom):
    """IQM and interval of `[(x, Estimate)]`; points below `bottom` as triangles."""
    xs = np.asarray([zero if x == 0 else x for x, _ in points], dtype=np.float64)
    est = [e for _, e in points]
    value = np.asarray([e.value for e in est])
    low = np.maximum([e.low for e in est], bottom)
    high = np.maximum([e.high for e in est], bottom)
    shown = np.maximum(value, bottom)
    kw = {k: v for k, v in style.items() if k != "label"}
    if len(xs) > 1 and kw.get("ls"):
        ax.fill_between(xs, low, high, color=kw["color"], alpha=0.15, lw=0)
        ax.plot(xs, shown, **{**kw, "marker": None})
    else:
        ax.errorbar(xs, shown, yerr=[shown - low, high - shown], fmt="none", ecolor=kw["color"])
    inside = value >= bottom
    marker_kw = {k: v for k, v in kw.items() if k in ("color", "marker", "ms")}
    ax.plot(xs[inside], shown[inside], ls="", **marker_kw)
    ax.plot(xs[~inside], shown[~inside], ls="", marker="v", color=kw["color"], ms=8)


def _age_axis(ax, ages, zero):
    ax.set_xscale("log")
    ticks = sorted(set(ages) - {0})
    ax.set_xticks([zero] + ticks, ["0"] + [f"{a:g}" for a in ticks])
    ax.minorticks_off()
    ax.axvline(zero * 2, color="0.6", lw=0.6, ls=":")


def age_panels(path: str, rows: list[dict]) -> bool:
    """One panel per (field, algorithm): normalized score against mean age, a line per
    mechanism, with the failure rate beside it. Returns False when there is nothing."""
    lines = summary.curves(rows)
    if not lines:
        return False
    plt = _plt()
    keys = list(lines)
    cols = min(2, len(keys))
    rows_n = math.ceil(len(keys) / cols)
    fig = plt.figure(figsize=(7.2 * cols, 3.6 * rows_n))
    grid = fig.add_gridspec(rows_n, 3 * cols, width_ratios=[4, 1.1, 0.35] * cols)
    for i, key in enumerate(keys):
        r, c = divmod(i, cols)
        ax, fail = fig.add_subplot(grid[r, 3 * c]), fig.add_subplot(grid[r, 3 * c + 1])
        _one_panel(ax, fail, key, lines[key])
    present = {m for mechanisms in lines.values() for m in mechanisms}
    handles = [
        plt.Line2D([], [], **{k: v for k, v in STYLE[m].items() if k != "ms"})
        for m in STYLE
        if m in present
    ]
    ncol = min(len(handles), 4)  # wider rows run off a one-panel figure
    fig.legend(handles=handles, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05 * -(-len(handles) // ncol), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _one_panel(ax, fail, key, mechanisms):
    field, algorithm = key
    ages = grid_ages(mechanisms)
    zero = zero_position(ages)
    bottom, top = _ylim([e for pts in mechanisms.values() for _, e in pts])
    for mechanism, points in mechanisms.items():
        style = STYLE.get(mechanism, dict(color="0.4", marker="x", label=mechanism))
        _draw_line(ax, points, style, zero, bottom)
        xs = [zero if a == 0 else a for a, _ in points]
        rates = [e.failure_rate for _, e in points]
        if mechanism not in summary.TARGETS and points[0][0] not in ages:  # a reference
            age, est = points[0]
            ax.annotate(
                f"{age:.0f}",
                (age, max(est.value, bottom)),
                fontsize=7,
                color=style["color"],
                xytext=(6, 4),
                textcoords="offset points",
            )
        fail.plot(xs, rates, **{k: v for k, v in style.items() if k not in ("label", "ms")})
    n = max(e.n for pts in mechanisms.values() for _, e in pts)
    stat = stats.label(n)
    ax.set_ylim(bottom, top)
    ax.axhline(0, color="0.7", lw=0.6)
    ax.axhline(1, color="0.7", lw=0.6, ls="--")
    ax.set_title(f"{field}: {name(algorithm)}", fontsize=10)
    ax.set_ylabel(f"normalized score ({stat}, 95% CI)", fontsize=8)
    ax.set_xlabel("target mean age (updates)", fontsize=8)
    fail.set_ylim(-0.05, 1.05)
    fail.set_title("failed", fontsize=8)
    for a in (ax, fail):
        _age_axis(a, ages, zero)
        a.tick_params(labelsize=7)
    fail.set_xticks([zero, max(ages)], ["0", f"{max(ages):g}"])
    right = max(a for pts in mechanisms.values() for a, _ in pts)
    for a in (ax, fail):
        a.set_xlim(zero / 1.6, max(right, max(ages)) * 1.6)


def summary_figure(path: str, rows: list[dict]) -> bool:
    """Every algorithm on one normalized axis: EMA solid, hard copy dashed, age 0 a square."""
    lines = summary.curves(rows)
    if not lines:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    ages = sorted({a for m in lines.values() for a in grid_ages(m)})
    zero = zero_position(ages)
    every = [
        e
        for m in lines.values()
        for k, pts in m.items()
        if k in summary.TARGETS + ("none",)
        for _, e in pts
    ]
    bottom, top = _ylim(every)
    colors = plt.get_cmap("tab10")
    for i, ((field, algorithm), mechanisms) in enumerate(lines.items()):
        color = colors(i % 10)
        for mechanism, ls in (("ema", "-"), ("hard", "--")):
            pts = mechanisms.get(mechanism, []) + mechanisms.get("none", [])
            pts = sorted(pts, key=lambda p: p[0])
            if pts:
                style = dict(color=color, marker="o", ls=ls, label=None)
                _draw_line(ax, pts, style, zero, bottom)
        ax.plot([], [], color=color, marker="o", label=f"{field}: {name(algorithm)}")
    ax.plot([], [], color="0.3", ls="-", label="EMA")
    ax.plot([], [], color="0.3", ls="--", label="hard copy")
    _age_axis(ax, ages, zero)
    ax.set_ylim(bottom, top)
    ax.axhline(0, color="0.7", lw=0.6)
    ax.axhline(1, color="0.7", lw=0.6, ls="--")
    ax.set_xlabel("target mean age (updates of the followed network); 0: no target")
    ax.set_ylabel("normalized score (0: untrained, 1: ceiling)")
    ax.legend(fontsize=8, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def partner_figure(path: str, rows: list[dict]) -> bool:
    """Normalized score against the partners' update ratio (log axis), a panel per
    algorithm on its own score scale; each point is one setting (its runs' ratios span the
    horizontal bar), labelled with its failures, labels alternating below and above."""
    partner = summary.axis_rows(rows, "partner")
    if not partner:
        return False
    plt = _plt()
    algorithms = summary.groups(partner, "algorithm")
    fig, axes = plt.subplots(
        1, len(algorithms), figsize=(4.6 * len(algorithms), 4.2), squeeze=False
    )
    colors = plt.get_cmap("tab10")
    for i, (ax, ((algorithm,), part)) in enumerate(zip(axes[0], algorithms.items(), strict=True)):
        color = colors(i % 10)
        points = summary.partner_points(part)
        x = np.asarray([p.ratio for p in points])
        est = [p.estimate for p in points]
        value = np.asarray([e.value for e in est])
        yerr = [value - [e.low for e in est], np.asarray([e.high for e in est]) - value]
        low, high = np.asarray([(p.ratio_low, p.ratio_high) for p in points]).T
        xerr = np.maximum(0.0, [x - low, high - x])
        ax.errorbar(x, value, yerr=yerr, xerr=xerr, color=color, marker="o", capsize=3)
        for n, p in enumerate(points):
            ax.annotate(
                f"{p.setting}\n{p.estimate.failures}/{p.estimate.n} failed",
                (p.ratio, p.estimate.value),
                fontsize=7,
                xytext=(5, -20 if n % 2 == 0 else 8),
                textcoords="offset points",
                color=color,
                zorder=5,  # over the error bars, on a white ground
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.5},
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlim(min(low.min(), 1.0) / 1.3, high.max() * 1.8)
        ax.margins(y=0.25)  # room for the labels above and below
        ax.axvline(1, color="0.6", lw=0.6, ls=":")
        ax.axhline(1, color="0.7", lw=0.6, ls="--")
        ax.set_title(name(algorithm), fontsize=10)
        ax.set_xlabel("updates of the lagging partner per update of the other")
    axes[0][0].set_ylabel(f"normalized score ({_statistic(partner)}, 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def scaling_figure(path: str, rows: list[dict]) -> bool:
    """The EMA scaling rule: normalized score against the batch factor k, the rule (decay
    d^k) and the control (decay d) per algorithm, k = 1 shared."""
    scaling = summary.axis_rows(rows, "scaling")
    if not scaling:
        return False
    plt = _plt()
    algorithms = summary.groups(scaling, "field", "algorithm")
    fig, axes = plt.subplots(1, len(algorithms), figsize=(5 * len(algorithms), 3.8), squeeze=False)
    for ax, ((field, algorithm), part) in zip(axes[0], algorithms.items(), strict=True):
        ks = sorted({r["k"] for r in part})
        for variant, color in (("rule", "#d62728"), ("control", "0.45")):
            pts = summary.scaling_points(part, variant)
            label = "decay d^k (rule)" if variant == "rule" else "decay d (control)"
            x = np.asarray([k for k, _ in pts])
            v = np.asarray([e.value for _, e in pts])
            err = [v - [e.low for _, e in pts], np.asarray([e.high for _, e in pts]) - v]
            ax.errorbar(x, v, yerr=err, color=color, marker="o", capsize=3, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
        ax.minorticks_off()
        ax.set_title(f"{field}: {name(algorithm)}", fontsize=10)
        ax.set_xlabel("k: batch x k, steps / k")
        ax.set_ylabel(f"normalized score ({_statistic(part)}, 95% CI)", fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
