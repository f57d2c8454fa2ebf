"""Renderers of the Consistency Training page: the EMA ablation, CT vs iCT, the 2-D bar,
the image runs and iCT's dropout."""

from __future__ import annotations

import numpy as np

from benchmarks import stats
from benchmarks.docs.engine import (
    machine,
    renders,
    span,
    table,
)

# ------------------------------------------------------------------ consistency training


def _ratios(v: dict, key: str) -> list[float]:
    return v["mean_of_10_draws"][key]


def _seeds(values, d: int = 2) -> str:
    return ", ".join(f"{x:.{d}f}" for x in values)


def _sig(x: float) -> str:
    """A ratio to the floor with the digits that matter at its size."""
    return f"{x:.2f}" if x < 10 else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def _sigs(values) -> str:
    return ", ".join(map(_sig, values))


@renders("ct.floor-draw", "consistency_bar_moons.json")
def ct_floor_draw(data: dict) -> str:
    mean = data["mean_of_10_draws"]["energy_floor_mean"]
    return (
        f"the 2-D bar's final evaluation drew {data['energy_floor']:.5f} against a mean of "
        f"{mean:.5f} over 10 draws"
    )


@renders("ct.floor-mean", "consistency_ablation.json")
def ct_floor_mean(data: dict) -> str:
    return f"{next(iter(data['table'].values()))['mean_of_10_draws']['energy_floor_mean'][0]:.5f}"


@renders("ct.ablation-time", "consistency_ablation.json")
def ct_ablation_time(data: dict) -> str:
    n = len(data["table"])
    return (
        f"{n} mu0 x {data['seeds']} seeds in one vmapped program: compile "
        f"{data['compile_seconds']:.0f} s, run {data['run_seconds']:.0f} s, evaluations "
        f"{data['eval_seconds']:.0f} s, {machine(data['provenance'])}"
    )


@renders("ct.ablation", "consistency_ablation.json")
def ct_ablation(data: dict) -> str:
    rows, label = [], stats.label(data["seeds"])
    for name, v in data["table"].items():
        one, single = _ratios(v, "ratio_1step"), v["ratio_1step_seeds"]
        rows.append(
            [
                name.split("=")[1],
                f"{_sig(stats.iqm(one))} ({', '.join(map(_sig, one))})",
                f"{_sig(stats.iqm(single))} ({', '.join(map(_sig, single))})",
                _sig(stats.iqm(_ratios(v, "ratio_1step_online"))),
                _sig(stats.iqm(_ratios(v, "ratio_2step"))),
                f"{v['final_lag_mean']:.3f}",
            ]
        )
    head = [
        "mu0",
        f"one-step / floor, sampling EMA, 10 draws ({label}; seeds)",
        f"the same, one draw ({label}; seeds)",
        f"online params, 10 draws ({label})",
        f"two-step / floor, 10 draws ({label})",
        "final lag(online, target)",
    ]
    return table(head, rows)


@renders("ct.ablation-findings", "consistency_ablation.json")
def ct_ablation_findings(data: dict) -> str:
    from stabilizers import schedules

    table = {float(k.split("=")[1]): v for k, v in data["table"].items()}
    slow = [_ratios(v, "ratio_1step") for mu, v in table.items() if mu >= 0.9]
    zero = {k: stats.iqm(_ratios(table[0.0], k)) for k in ("ratio_1step", "ratio_1step_online")}
    zero["ratio_2step"] = stats.iqm(_ratios(table[0.0], "ratio_2step"))
    cfg = data["config"]
    steps = cfg["total_steps"] // cfg["batch_size"]
    mu_end = float(schedules.consistency_ema(0.9, cfg["s0"], cfg["s1"], steps)(steps))
    return "\n".join(
        [
            f"- With mu0 >= 0.9 the one-step samples end at {span(list(map(stats.iqm, slow)), 0)}x "
            f"the mean floor ({stats.label(len(slow[0]))} per mu0; no seed below "
            f"{min(map(min, slow)):.0f}x); with mu0 = 0 at {zero['ratio_1step']:.1f}x.",
            f"- At mu0 = 0, sampling from the EMA of the online params instead of the online "
            f"params lowers the one-step ratio from {zero['ratio_1step_online']:.1f}x to "
            f"{zero['ratio_1step']:.1f}x; two steps (tau 0.8) give {zero['ratio_2step']:.1f}x.",
            f"- The run is {steps} steps: mu(k) of mu0 = 0.9 reaches {mu_end:.4f} at the end, a "
            f"time constant of about {1 / (1 - mu_end):.0f} steps.",
        ]
    )


@renders("ct.compare", "consistency_compare.json")
def ct_compare(data: dict) -> str:
    names = {
        "ct": "CT (L2, mu0 0.9, uniform n, `s0 = 2`, `s1 = 150`)",
        "ict": "iCT (pseudo-Huber, mu0 0, lognormal n, 1/(t_{n+1} - t_n), 10 -> 1280)",
    }
    rows = []
    for key, v in data.items():
        if key == "provenance":
            continue
        rows.append(
            [
                names[key],
                f"{_sigs(_ratios(v, 'ratio_1step'))} ({_sigs(v['ratio_1step'])})",
                _sigs(_ratios(v, "ratio_1step_online")),
                f"{_sigs(_ratios(v, 'ratio_2step'))} ({_sigs(v['ratio_2step'])})",
                f"{v['run_seconds']:.1f} s (+{v['compile_seconds']:.1f} s)",
            ]
        )
    head = [
        "recipe",
        "one-step / floor, sampling EMA (seeds 0, 1, 2)",
        "online params",
        "two-step / floor",
        "run time (3 seeds, compile apart)",
    ]
    return table(head, rows)


@renders("readme.ct", "consistency_compare.json")
def readme_ct(data: dict) -> str:
    rows = [
        [
            key.upper() if key == "ct" else "iCT",
            _sigs(_ratios(data[key], "ratio_1step")),
            _sigs(_ratios(data[key], "ratio_2step")),
        ]
        for key in ("ct", "ict")
    ]
    return table(
        ["recipe (two moons, 8000 steps)", "one step / floor (seeds 0, 1, 2)", "two steps / floor"],
        rows,
    )


@renders("ct.compare-findings", "consistency_compare.json")
def ct_compare_findings(data: dict) -> str:
    ict, ct = data["ict"], data["ct"]
    one, two = np.array(_ratios(ict, "ratio_1step")), np.array(_ratios(ict, "ratio_2step"))
    online = np.array(_ratios(ict, "ratio_1step_online"))
    better = int((two < one).sum())
    return "\n".join(
        [
            f"- iCT's one-step samples are {span(one, 2)}x the floor, its two-step samples "
            f"{span(two, 2)}x: two steps improve on one step in {better} of {len(one)} seeds. "
            f"CT at the same budget stays at {span(_ratios(ct, 'ratio_1step'), 0)}x.",
            f"- Sampling from the EMA of the online params: {span(online / one)}x lower distance "
            f"than the online params in iCT's runs (per seed).",
        ]
    )


@renders("ct.ict-one-step", "consistency_compare.json")
def ct_ict_one_step(data: dict) -> str:
    return f"{span(_ratios(data['ict'], 'ratio_1step'), 2)}x"


@renders("ct.ict-two-step", "consistency_compare.json")
def ct_ict_two_step(data: dict) -> str:
    return f"{span(_ratios(data['ict'], 'ratio_2step'), 2)}x"


@renders("ct.ict-run", "consistency_compare.json")
def ct_ict_run(data: dict) -> str:
    return f"{data['ict']['run_seconds']:.1f} s"


@renders("ct.mu0-gain", "consistency_ablation.json")
def ct_mu0_gain(data: dict) -> str:
    one = {k: stats.iqm(_ratios(v, "ratio_1step")) for k, v in data["table"].items()}
    return f"{one['mu0=0.9']:.0f}x -> {one['mu0=0.0']:.1f}x"


@renders("ct.bar", "consistency_bar_moons.json")
def ct_bar(data: dict) -> str:
    m = data["mean_of_10_draws"]
    rows = [
        [
            label,
            f"{data[e]:.5f}",
            f"{data[e] / data['energy_floor']:.1f}",
            f"{m[e + '_mean']:.5f}",
            f"{m[r]:.2f}",
        ]
        for label, e, r in (
            ("one step, sampling EMA", "energy_1step", "ratio_1step"),
            ("two steps (tau 0.8)", "energy_2step", "ratio_2step"),
            ("one step, online params", "energy_1step_online", "ratio_1step_online"),
        )
    ]
    head = [
        "",
        "energy distance, final evaluation",
        f"/ its floor draw ({data['energy_floor']:.5f})",
        "mean of 10 draws",
        f"/ mean floor ({m['energy_floor_mean']:.5f})",
    ]
    return (
        table(head, rows) + f"\n\nRun {data['run_seconds']:.0f} s after `block_until_ready`, "
        f"compile {data['compile_seconds']:.0f} s, one seed, {machine(data['provenance'])}."
    )


@renders("ct.bar-ratios", "consistency_bar_moons.json")
def ct_bar_ratios(data: dict) -> str:
    m = data["mean_of_10_draws"]
    return (
        f"{m['ratio_1step']:.2f}x one step, {m['ratio_2step']:.2f}x two steps, in "
        f"{data['run_seconds']:.0f} s"
    )


def _image(title: str):
    def render(data: dict) -> str:
        c = data["config"]
        one, two, floor = data["frechet_1step"], data["frechet_2step"], data["frechet_floor"]
        return (
            f"- **{title}** (U-Net {tuple(c['channels'])}, batch {c['batch_size']}, "
            f"{data['iterations']} steps; {machine(data['provenance'])}): Frechet distance "
            f"{one:.1f} in one step, **{two:.1f}** in two, against a floor of {floor:.1f} "
            f"({one / floor:.1f}x and {two / floor:.1f}x the floor); {data['run_seconds']:.1f} s "
            f"of training ({1e3 * data['run_seconds'] / data['iterations']:.0f} ms per step) "
            f"after {data['compile_seconds']:.0f} s of compile."
        )

    return render


renders("ct.digits", "consistency_digits.json")(_image("sklearn digits 8x8"))
renders("ct.mnist5k", "consistency_mnist5k.json")(_image("MNIST-5k 28x28"))
renders("ct.digits-cpu", "consistency_digits_cpu.json")(_image("sklearn digits 8x8, CPU"))


@renders("ct.dropout", "ict_dropout.json")
def ct_dropout(data: dict) -> str:
    rows, label = [], stats.label(data["seeds"])
    for name, v in data["table"].items():
        m = v["mean_of_10_draws"]
        rows.append(
            [
                name.split("=")[1],
                f"{stats.iqm(m['ratio_1step']):.2f} ({_seeds(m['ratio_1step'])})",
                f"{stats.iqm(m['ratio_2step']):.2f} ({_seeds(m['ratio_2step'])})",
                f"{1e3 * stats.iqm(m['energy_u_1step_mean']):.2f}",
                f"{1e3 * stats.iqm(m['energy_u_2step_mean']):.2f}",
                f"{1e3 * m['energy_u_floor_mean'][0]:.2f}",
            ]
        )
    head = [
        "dropout",
        f"one step / floor, 10 draws ({label}; seeds)",
        f"two steps / floor ({label}; seeds)",
        "U-statistic one step (x 1e-3)",
        "two steps (x 1e-3)",
        "two held-out sets (x 1e-3)",
    ]
    return table(head, rows) + f"\n\n{machine(data['provenance'])}; `{data['command']}`."
