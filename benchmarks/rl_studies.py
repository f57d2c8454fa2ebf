"""The RL studies: one command each, runs through `benchmarks.train`, then a table and a figure.

    python -m benchmarks.rl_studies dqn-targets   # CartPole-v1: no target, hard copy, EMA taus
    python -m benchmarks.rl_studies td3-delay     # Pendulum-v1: TD3 with d = 1, 2, 4, and DDPG
    python -m benchmarks.rl_studies sac           # Pendulum-v1: SAC
    python -m benchmarks.rl_studies report        # tables and figures from the runs so far

Each study is a list of variants: an algorithm's config (a preset such as
`td3.PRESETS["pendulum"]`, with the field the study varies replaced) and a sweep. Each
variant is one `benchmarks.train` run (all its seeds, and a vmapped sweep where there is
one, in one program), given the flags that set its config, written to
`runs/rl/<study>/<variant>/`. A finished variant is skipped, an interrupted one resumes
from its checkpoint, so a study can be run in pieces (`--only VARIANT`). After the runs
the study writes `docs/results/rl_<study>.json` (per-seed final returns, IQM with a 95%
bootstrap interval, throughput, compile time) and `docs/figures/rl_<study>.png` (IQM
learning curves of the greedy / deterministic evaluation return), and prints a Markdown
table.

By default the runs split the CPU into one JAX device per core with one XLA thread each
(`--cpu-layout split`, `benchmarks.cpu_layout`, set before JAX starts): the harness spreads
the seeds over the devices, and no small kernel waits on a second thread
(`rl_throughput.py` measures the difference). `docs/results/rl_<study>.json` holds
`{"provenance": ..., "variants": {name: {..., "provenance": of its run}}}`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any, NamedTuple

import numpy as np

from benchmarks import cli, provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Variant(NamedTuple):
    """One `benchmarks.train` run of a study: `--algo algo`, the flags that set `config`,
    and `--sweep` for each of `sweep` ("field=v1,v2,...")."""

    algo: str
    config: Any
    sweep: tuple[str, ...] = ()


def studies() -> dict[str, dict[str, Variant]]:
    """Every study's variants, by name. Imports the agents (and so JAX): call it once the
    CPU layout is set."""
    from agents import dqn, sac, td3

    pendulum = td3.PRESETS["pendulum"]
    return {
        "dqn_targets": {
            "hard copy (every 500 env steps)": Variant("dqn", dqn.Config(target="periodic")),
            "no target": Variant("dqn", dqn.Config(target="none")),
            "ema": Variant("dqn", dqn.Config(target="ema"), ("tau=0.005,0.05",)),
        },
        "td3_delay": {
            "td3 d=1": Variant("td3", dataclasses.replace(pendulum, policy_delay=1)),
            "td3 d=2": Variant("td3", dataclasses.replace(pendulum, policy_delay=2)),
            "td3 d=4": Variant("td3", dataclasses.replace(pendulum, policy_delay=4)),
            "ddpg": Variant("ddpg", dataclasses.replace(pendulum, **changes(td3.PRESETS["ddpg"]))),
        },
        "sac": {"sac": Variant("sac", sac.PRESETS["pendulum"])},
    }


def changes(config: Any) -> dict[str, Any]:
    """The fields of `config` that differ from its class's defaults."""
    default = type(config)()
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if getattr(config, f.name) != getattr(default, f.name)
    }


def config_flags(config: Any) -> list[str]:
    """The command-line flags that set `config` from its class's defaults."""
    flags = []
    for name, value in changes(config).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, tuple):
            flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def train_args(variant: Variant) -> list[str]:
    """The `benchmarks.train` arguments of `variant` (before --seeds, --out)."""
    sweeps = [arg for sweep in variant.sweep for arg in ("--sweep", sweep)]
    return ["--algo", variant.algo, *config_flags(variant.config), *sweeps]


COMMANDS = {"dqn-targets": "dqn_targets", "td3-delay": "td3_delay", "sac": "sac"}
TITLES = {
    "dqn_targets": "DQN on CartPole-v1: target networks",
    "td3_delay": "TD3 on Pendulum-v1: policy delay d, and DDPG",
    "sac": "SAC on Pendulum-v1",
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "=." else "_" for c in name).strip("_")


def run_dir(study: str, variant: str) -> str:
    return os.path.join(ROOT, "runs", "rl", study, _slug(variant))


def run_study(study: str, seeds: int, only: str | None, extra: list[str]) -> None:
    from benchmarks import harness, train

    for variant, spec in studies()[study].items():
        if only is not None and _slug(only) != _slug(variant):
            continue
        out = run_dir(study, variant)
        if harness.completed(out):
            print(f"[rl_studies] {study}/{variant}: done, skipped ({out})", file=sys.stderr)
            continue
        argv = [*train_args(spec), "--seeds", str(seeds), "--out", out, "--no-progress", *extra]
        print(f"[rl_studies] python -m benchmarks.train {' '.join(argv)}", file=sys.stderr)
        status = train.main(argv)
        if status:
            raise SystemExit(f"{study}/{variant} ended with status {status}")


def _load(study: str):
    """Per (variant, sweep point): label, results, and eval curve `(x [T], y [T, S])`."""
    from benchmarks import harness

    rows = []
    for variant in studies()[study]:
        out = run_dir(study, variant)
        if not os.path.exists(os.path.join(out, "results.json")):
            continue
        with open(os.path.join(out, "results.json")) as f:
            res = json.load(f)
        x, y = harness.curve(harness.read_log(out), "return", "env_steps", kind="eval")
        points = len(res["final"]["return"])
        y = y.reshape(len(x), points, -1)
        labels = [
            ", ".join(f"{k}={v}" for k, v in pt.items() if k != "seed")
            for pt in res["grid"][:: len(res["seeds"])]
        ]
        for p, label in enumerate(labels):
            name = f"{variant} {label}".strip() if label else variant
            rows.append((name, res, p, x, y[:, p, :]))
    return rows


def report(study: str) -> str:
    from benchmarks import harness, plots, stats

    rows = _load(study)
    if not rows:
        return f"{study}: no runs yet"
    table = {}
    lines = [
        "| variant | seeds | final return IQM [95% CI] | mean +- std | env steps / s | compile s |",
        "|---|---|---|---|---|---|",
    ]
    for name, res, p, _, _ in rows:
        final = np.asarray(res["final"]["return"][p], dtype=np.float64)
        lo, hi = stats.bootstrap_ci(final, stats.iqm)
        table[name] = {
            "final_return": final.tolist(),
            "iqm": float(stats.iqm(final)),
            "iqm_ci95": [float(lo), float(hi)],
            "mean": float(final.mean()),
            "std": float(final.std()),
            **harness.run_record(res),
        }
        lines.append(
            f"| {name} | {len(final)} | {stats.iqm(final):.1f} [{lo:.1f}, {hi:.1f}] | "
            f"{final.mean():.1f} +- {final.std():.1f} | {res['env_steps_per_second']:,.0f} | "
            f"{res['compile_seconds']:.1f} |"
        )
    write_table(os.path.join(ROOT, "docs", "results", f"rl_{study}.json"), table)
    os.makedirs(os.path.join(ROOT, "docs", "figures"), exist_ok=True)
    # one figure: every variant's curve on the shared x grid of the longest run
    x = max((r[3] for r in rows), key=len)
    ys, labels = [], []
    for name, _, _, xr, yr in rows:
        y = np.full((len(x), yr.shape[1]), np.nan)
        idx = np.searchsorted(x, xr)
        y[idx] = yr
        ys.append(y)
        labels.append(name)
    width = max(y.shape[1] for y in ys)
    y = np.stack(
        [np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=np.nan) for v in ys], 1
    )
    plots.learning_curve(
        os.path.join(ROOT, "docs", "figures", f"rl_{study}.png"),
        x,
        y,
        labels,
        xlabel="env steps (per seed)",
        ylabel="evaluation return",
        title=TITLES[study],
    )
    return "\n".join(lines)


def write_table(path: str, table: dict) -> None:
    """Writes a study's table of variants with the provenance of this command."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"provenance": provenance.provenance(), "variants": table}, f, indent=1)


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m benchmarks.rl_studies", description=__doc__)
    p.add_argument("study", choices=[*COMMANDS, "report"])
    p.add_argument("--seeds", type=cli.positive_int, default=8)
    p.add_argument("--only", default=None, help="run one variant of the study")
    cli.add_layout_flag(p)
    args, extra = p.parse_known_args(argv)
    cli.configure_layout(args)
    names = list(COMMANDS.values()) if args.study == "report" else [COMMANDS[args.study]]
    if args.only is not None:
        variants = list(studies()[names[0]]) if args.study != "report" else []
        if _slug(args.only) not in map(_slug, variants):
            p.error(f"--only {args.only!r}: the {args.study} study's variants are {variants}")
    for study in names:
        if args.study != "report":
            run_study(study, args.seeds, args.only, extra)
        print(f"\n### {TITLES[study]}\n\n{report(study)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
