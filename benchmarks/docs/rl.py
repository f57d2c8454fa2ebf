"""Renderers of the reinforcement-learning pages: DQN targets, TD3 / DDPG / SAC, throughput."""

from __future__ import annotations

import numpy as np

from benchmarks import stats
from benchmarks.docs.engine import (
    ci,
    kilo,
    machine,
    num,
    renders,
    seed_mean,
    span,
    table,
)

# ------------------------------------------------------------------ reinforcement learning

RL_LABELS = {
    "hard copy (every 500 env steps)": "hard copy every 500 env steps (default)",
    "no target": "none (online params, stop-gradient)",
    "ema tau=0.005": "EMA, tau 0.005 per gradient step",
    "ema tau=0.05": "EMA, tau 0.05 per gradient step",
    "td3 d=1": "TD3, d = 1",
    "td3 d=2": "TD3, d = 2 (the paper's)",
    "td3 d=4": "TD3, d = 4",
    "ddpg": "DDPG",
    "sac": "SAC",
}
DQN_BAR, PENDULUM_BAR, SPEED_BAR = 475.0, -200.0, 1.5 * 111_000


def _variants(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "provenance"}


def _programs(data: dict) -> dict:
    """(compile s, run s) -> the variants of one program: a swept program's variants
    report the same timing, that of all their runs together."""
    out: dict = {}
    for name, v in _variants(data).items():
        out.setdefault((v["compile_seconds"], v["run_seconds"]), []).append(name)
    return out


def _final(v: dict) -> dict:
    return stats.summary(v["final_return"])


@renders("readme.commands", "rl_dqn_targets.json")
def readme_commands(data: dict) -> str:
    variants, programs = _variants(data), _programs(data)
    seconds = sum(c + r for c, r in programs)
    seeds = len(next(iter(variants.values()))["seeds"])
    cores = data["provenance"]["cpu_cores"]
    return (
        "```bash\n"
        f"make demo   # creates .venv, then runs the DQN target-network ablation on CartPole-v1 "
        f"({seeds} seeds x {len(variants)} targets; it trains for about "
        f"{round(seconds / 60)} minutes on {cores} CPU cores)\n"
        f"make test   # creates .venv, then runs the test suite (about 11 minutes on {cores} "
        "CPU cores)\n```"
    )


@renders("readme.dqn", "rl_dqn_targets.json")
def readme_dqn(data: dict) -> str:
    rows = [[RL_LABELS[k], ci(_final(v))] for k, v in _variants(data).items()]
    n = len(next(iter(_variants(data).values()))["seeds"])
    return table(["target network", f"final return, IQM [95% CI] over {n} seeds"], rows)


@renders("rl.dqn", "rl_dqn_targets.json")
def rl_dqn(data: dict) -> str:
    programs = {name: key for key, names in _programs(data).items() for name in names}
    runs = {
        key: sum(len(data[n]["seeds"]) for n in names) for key, names in _programs(data).items()
    }
    rows = []
    for name, v in _variants(data).items():
        key = programs[name]
        rows.append(
            [
                RL_LABELS[name],
                ci(_final(v)),
                ", ".join(num(x) for x in v["final_return"]),
                runs[key],
                num(v["env_steps_per_second"], 0),
                num(v["compile_seconds"]),
            ]
        )
    head = [
        "target",
        "final return, IQM [95% CI]",
        "per seed (seeds 0, 1, ...)",
        "runs in its program",
        "env steps / s (all runs of the program)",
        "compile s",
    ]
    return table(head, rows)


@renders("rl.dqn-below-bar", "rl_dqn_targets.json")
def rl_dqn_below_bar(data: dict) -> str:
    lines = []
    for name, v in _variants(data).items():
        low = [
            f"{s} ({num(r)})"
            for s, r in zip(v["seeds"], v["final_return"], strict=True)
            if r < DQN_BAR
        ]
        lines.append(f"- {RL_LABELS[name]}: {', '.join(low) if low else 'none'}")
    return "\n".join(lines)


def _pendulum_table(data: dict) -> str:
    rows = [
        [RL_LABELS[k], ci(_final(v)), num(v["env_steps_per_second"], 0), num(v["compile_seconds"])]
        for k, v in _variants(data).items()
    ]
    n = len(next(iter(_variants(data).values()))["seeds"])
    return table(
        ["agent", f"final return, IQM [95% CI] over {n} seeds", "env steps / s", "compile s"], rows
    )


renders("rl.td3", "rl_td3_delay.json")(_pendulum_table)
renders("rl.sac", "rl_sac.json")(_pendulum_table)


@renders("readme.td3", "rl_td3_delay.json")
def readme_td3(data: dict) -> str:
    rows = [[RL_LABELS[k], ci(_final(v))] for k, v in _variants(data).items()]
    return table(["agent (Pendulum-v1, 20k env steps)", "final return, IQM [95% CI]"], rows)


@renders("readme.sac", "rl_sac.json")
def readme_sac(data: dict) -> str:
    return f"SAC on the same settings: {ci(_final(data['sac']))}."


@renders("rl.td3-seeds", "rl_td3_delay.json")
def rl_td3_seeds(data: dict) -> str:
    variants = _variants(data)
    returns = np.array([v["final_return"] for v in variants.values()])  # [variant, seed]
    seeds = next(iter(variants.values()))["seeds"]
    rows = [[s, *(num(x) for x in returns[:, i])] for i, s in enumerate(seeds)]
    gap = returns.max(0) - returns.min(0)
    worst = int(np.argmax(gap))
    mean = returns.mean(0)
    per_seed = table(["seed", *(RL_LABELS[k] for k in variants)], rows)
    return (
        f"{per_seed}\n\nSeed for seed the {len(variants)} variants end within "
        f"{num(gap.max())} of each other (the widest: seed {seeds[worst]}, "
        f"{span(returns[:, worst])}), while the seeds' own averages over the variants "
        f"range from {num(mean.min())} (seed {seeds[int(np.argmin(mean))]}) to "
        f"{num(mean.max())} (seed {seeds[int(np.argmax(mean))]})."
    )


def _tp_rows(data: list) -> list[tuple[dict, dict]]:
    return [(part, row) for part in data for row in part["rows"]]


def _tp_label(part: dict, row: dict) -> str:
    algo = row["algo"]
    if "anchor" in algo:
        return "DQN anchor (PureJaxRL layout)"
    label = algo.upper()
    if row.get("replay") == "flashbax":
        label += ", flashbax item buffer"
    if row.get("seed_chunk"):
        label += f", {row['seed_chunk']} seeds per device at a time"
    return label


def _tp_order(item) -> tuple:
    part, row = item
    kind = 4 if "anchor" in row["algo"] else (3 if part["layout"] == "default" else 0)
    kind += 1 if row.get("seed_chunk") else 0
    kind += 2 if row.get("replay") == "flashbax" else 0
    return (0 if row["algo"].startswith("dqn") else 1, kind, row["seeds"])


@renders("rl.throughput", "rl_throughput.json")
def rl_throughput(data: list) -> str:
    rows = [
        [
            part["layout"],
            _tp_label(part, row),
            row["seeds"],
            num(row["env_steps_per_second"], 0),
            num(row["compile_seconds"]),
            num(row["flops_per_second"] / 1e9),
            f"{100 * row['utilisation']:.0f}%",
        ]
        for part, row in sorted(_tp_rows(data), key=_tp_order)
    ]
    head = [
        "layout",
        "agent",
        "seeds",
        "env steps / s",
        "compile s",
        "matmul GFLOP/s",
        "utilisation",
    ]
    return table(head, rows)


def _tp(data: list, algo: str, layout: str = "split", chunk=None, replay="ring") -> dict:
    """seeds -> env steps / s of the matching rows."""
    return {
        r["seeds"]: r["env_steps_per_second"]
        for p, r in _tp_rows(data)
        if r["algo"] == algo
        and p["layout"] == layout
        and r.get("seed_chunk") == chunk
        and r.get("replay") == replay
    }


def _rate(algo: str, x: float) -> str:
    return kilo(x) if algo == "dqn" else num(x, 0)


def _scaling(algo: str, chunk):
    def render(data: list) -> str:
        by_seeds = _tp(data, algo, chunk=chunk)
        return " / ".join(_rate(algo, by_seeds[s]) for s in (8, 32, 128))

    return render


for _algo in ("dqn", "td3"):
    renders(f"rl.tp-{_algo}-plain", "rl_throughput.json")(_scaling(_algo, None))
    renders(f"rl.tp-{_algo}-chunk2", "rl_throughput.json")(_scaling(_algo, 2))
renders("harness.chunks", "rl_throughput.json")(_scaling("dqn", 2))


@renders("rl.tp-layout", "rl_throughput.json")
def rl_tp_layout(data: list) -> str:
    parts = []
    for algo in ("dqn", "td3"):
        split, default = _tp(data, algo)[8], _tp(data, algo, "default")[8]
        parts.append(f"{algo.upper()} {_rate(algo, split)} against {_rate(algo, default)}")
    return ", ".join(parts)


@renders("rl.tp-gemm", "rl_throughput.json")
def rl_tp_gemm(data: list) -> str:
    gemm = [p["gemm_flops_per_second"] / 1e9 for p in data]
    return f"{len(gemm)} processes of this table ranged from {span(gemm, 0)} GFLOP/s"


@renders("rl.tp-compile", "rl_throughput.json")
def rl_tp_compile(data: list) -> str:
    return span([r["compile_seconds"] for _, r in _tp_rows(data)], 0) + " s"


@renders("rl.tp-run1", "rl_throughput_run1.json")
def rl_tp_run1(data: list) -> str:
    ring, flashbax = _tp(data, "dqn")[8], _tp(data, "dqn", replay="flashbax")[8]
    return f"{kilo(ring)} (ring buffer) and {kilo(flashbax)} (flashbax)"


def _interleaved(data: dict) -> str:
    rows = []
    for name, v in data["interleaved"].items():
        best = kilo(max(v["segments"])) if "segments" in v else "-"
        rows.append([name, f"{kilo(v['median'])} [{kilo(v['q25'])}, {kilo(v['q75'])}]", best])
    return table(
        [
            "variant (DQN, split layout)",
            "median [quartiles] of 12 segments, env steps / s",
            "fastest segment",
        ],
        rows,
    )


for _name, _file in (("", ""), ("-run1", "_run1"), ("-run2", "_run2")):
    renders(f"rl.interleaved{_name}", f"rl_throughput_interleaved{_file}.json")(_interleaved)


@renders("rl.purejaxrl", "dqn_vs_purejaxrl.json")
def rl_purejaxrl(data: dict) -> str:
    rows = []
    for i, r in enumerate(data["runs"], 1):
        per_seed = num(r.get("env_steps_per_seed", 500_000) / 1e3, 0) + "k"
        final = ci(stats.summary(r["final_return"])) if "final_return" in r else "-"
        rows.append(
            [
                i,
                r["program"],
                r["seeds"],
                per_seed,
                num(r["env_steps_per_second"], 0),
                num(r["compile_seconds"]),
                num(r["run_seconds"]),
                final,
            ]
        )
    head = [
        "#",
        "program",
        "seeds",
        "env steps per seed",
        "env steps / s",
        "compile s",
        "run s",
        "final return, IQM [95% CI]",
    ]
    return table(head, rows)


def _full_runs(data: dict) -> tuple[list, list]:
    runs = [r for r in data["runs"] if r["seeds"] == 8 and "env_steps_per_seed" not in r]
    ours = [r["env_steps_per_second"] for r in runs if r["program"].startswith("ours")]
    theirs = [r["env_steps_per_second"] for r in runs if r["program"] == "purejaxrl"]
    return ours, theirs


@renders("rl.purejaxrl-ratio", "dqn_vs_purejaxrl.json")
def rl_purejaxrl_ratio(data: dict) -> str:
    ours, theirs = _full_runs(data)
    (a, la), (b, lb) = seed_mean(ours), seed_mean(theirs)
    return (
        f"the project's DQN ran the 8-seed, 500k-step run at {kilo(min(ours))} to "
        f"{kilo(max(ours))} "
        f"env steps/s ({la} {kilo(a)} over {len(ours)} runs), PureJaxRL's `dqn.py` at "
        f"{kilo(min(theirs))} to {kilo(max(theirs))} ({lb} {kilo(b)} over {len(theirs)} runs): "
        f"{a / b:.1f}x"
    )


@renders("rl.bar-dqn", "rl_dqn_targets.json")
def rl_bar_dqn(data: dict) -> str:
    s = _final(data["hard copy (every 500 env steps)"])
    met = "met" if s["value"] >= DQN_BAR else "not met"
    return f"{ci(s)} with the default hard copy: **{met}**"


@renders("rl.bar-td3", "rl_td3_delay.json")
def rl_bar_td3(data: dict) -> str:
    summaries = {k: _final(v) for k, v in _variants(data).items()}
    met = "met" if all(s["value"] >= PENDULUM_BAR for s in summaries.values()) else "not met by all"
    return "; ".join(f"{RL_LABELS[k]} {ci(s)}" for k, s in summaries.items()) + f": **{met}**"


@renders("rl.bar-sac", "rl_sac.json")
def rl_bar_sac(data: dict) -> str:
    s = _final(data["sac"])
    return f"{ci(s)}: **{'met' if s['value'] >= PENDULUM_BAR else 'not met'}**"


@renders("rl.bar-speed", "dqn_vs_purejaxrl.json")
def rl_bar_speed(data: dict) -> str:
    ours, theirs = _full_runs(data)
    met = "met" if max(ours) >= SPEED_BAR else "not met"
    iqms = [stats.iqm(r["final_return"]) for r in data["runs"] if "final_return" in r]
    return (
        f"{kilo(min(ours))} to {kilo(max(ours))} env steps/s in the 500k-step runs: **{met}** in "
        f"absolute terms; against PureJaxRL's own `dqn.py` on the same machine "
        f"({kilo(min(theirs))} to {kilo(max(theirs))}), "
        f"{seed_mean(ours)[0] / seed_mean(theirs)[0]:.1f}x; the final return's IQM "
        f"{span(iqms)} in every run of the project's DQN"
    )


@renders("rl.bar-scaling", "rl_throughput.json")
def rl_bar_scaling(data: dict) -> str:
    chunked, plain = _tp(data, "dqn", chunk=2), _tp(data, "dqn")
    met = "met, with seed chunks" if chunked[32] >= chunked[8] else "not met"
    return (
        f"with `seed_chunk=2`, {kilo(chunked[8])} at 8 seeds, {kilo(chunked[32])} at 32 and "
        f"{kilo(chunked[128])} at 128; without chunks {kilo(plain[8])}, {kilo(plain[32])} and "
        f"{kilo(plain[128])}: **{met}** in this table"
    )


@renders("rl.bar-flops", "rl_throughput.json")
def rl_bar_flops(data: list) -> str:
    row = next(r for _, r in _tp_rows(data) if r["algo"] == "dqn")
    per_step = row["flops_per_second"] / row["env_steps_per_second"]
    gemm = [p["gemm_flops_per_second"] / 1e9 for p in data]
    return (
        f"DQN's default config does {per_step / 1e6:.2f} MFLOP of matmuls per env step, so "
        f"{kilo(SPEED_BAR)} env steps/s needs {SPEED_BAR * per_step / 1e9:.0f} GFLOP/s, against "
        f"{span(gemm, 0)} GFLOP/s that a 1024 x 1024 float32 GEMM reached on these cores"
    )


@renders("rl.machine", "rl_dqn_targets.json")
def rl_machine(data: dict) -> str:
    prov = data["provenance"]
    return f"{machine(prov)}, jax {prov['versions']['jax']}, {prov['device_count']} JAX devices"


@renders("rl.td3-authors", "rl_throughput.json")
def rl_td3_authors(data: list) -> str:
    rate = _tp(data, "td3")[8]
    return (
        f"{num(rate, 0)} env steps/s for 8 seeds (throughput table), about "
        f"{8 * 20_000 / rate / 60:.0f} minutes per variant of 8 seeds x 20k env steps"
    )


@renders("rl.chunk-returns", "dqn_vs_purejaxrl.json")
def rl_chunk_returns(data: dict) -> str:
    finals: dict = {}
    for r in data["runs"]:
        if "final_return" in r:
            finals.setdefault(r["program"].removeprefix("ours, "), set()).add(
                tuple(r["final_return"])
            )
    groups: dict = {}
    for program, returns in finals.items():
        for ret in returns:
            groups.setdefault(ret, []).append(program)
    return "; ".join(
        f"{' and '.join(programs)}: {', '.join(num(x) for x in ret)}"
        for ret, programs in groups.items()
    )
