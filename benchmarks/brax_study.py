"""TD3 and SAC on a Brax locomotion task: one command, a results file and a figure.

    python -m benchmarks.brax_study                  # brax:hopper, the CPU budget below
    python -m benchmarks.brax_study --quick          # a smoke run of a minute or two
    python -m benchmarks.brax_study --steps 1000000  # e.g. on a GPU: the same command

Each algorithm is one `benchmarks.train` run of `td3.PRESETS["brax"]` or
`sac.PRESETS["brax"]` (every seed in one vmapped program, spread over the JAX devices),
written to `runs/brax/<env>/<algo>/`. A finished run is skipped and an interrupted one
resumes from its checkpoint, so the command can be stopped and started again. Then the
study writes `--out` (default `docs/results/brax.json`: per-seed final evaluation returns,
their IQM with a 95% bootstrap interval, the learning curves, throughput, compile time,
the configs and provenance) and `docs/figures/brax.png` (IQM learning curves), and
prints a Markdown table.

Published numbers: Brax publishes no SAC or TD3 returns for its tasks; its training
notebook gives SAC settings for hopper (6.5M env steps, 128 envs, 64 gradient steps per
128 env steps, reward scaling 30, observation normalisation, discount 0.997) and plots,
but no table. The results file says so beside the measured numbers.

Default budget (`--steps`): `CPU_STEPS` env steps per seed on a CPU, sized so that both
algorithms with `SEEDS` seeds finish in about 25 minutes on 2 idle cores; `GPU_STEPS`
when JAX's default backend is an accelerator.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from benchmarks import cli, provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = "python -m benchmarks.brax_study"
ALGOS = ("td3", "sac")
ENV = "brax:hopper"
SEEDS = 6  # a multiple of 2: both CPU cores (one JAX device each) get as many seeds
CPU_STEPS = 100_000
GPU_STEPS = 1_000_000
QUICK = ["--hidden", "16", "--batch-size", "16", "--learning-starts", "200"]
QUICK += ["--eval-episodes", "2", "--buffer-size", "2000"]
PUBLISHED = (
    "Brax publishes no SAC or TD3 returns for this task (its training notebook gives SAC "
    "settings for hopper and learning-curve plots only)."
)


def run_dir(env: str, algo: str, quick: bool) -> str:
    slug = env.replace(":", "_").replace("@", "_")
    return os.path.join(ROOT, "runs", "brax_quick" if quick else "brax", slug, algo)


def train_algo(algo: str, env: str, steps: int, seeds: int, quick: bool) -> str:
    """One `benchmarks.train` run (skipped when finished, resumed when interrupted)."""
    from benchmarks import harness, train

    out = run_dir(env, algo, quick)
    if harness.completed(out):
        print(f"[brax_study] {algo}: done, skipped ({out})", file=sys.stderr)
        return out
    argv = ["--algo", algo, "--preset", "brax", "--env", env, "--seeds", str(seeds)]
    argv += ["--total-steps", str(steps), "--segments", "20", "--eval-every", "2"]
    # the buffer keeps every transition of a run, up to the usual 1M
    sizes = QUICK if quick else ["--buffer-size", str(min(steps, 1_000_000))]
    argv += ["--out", out, "--no-progress", *sizes]
    print(f"[brax_study] python -m benchmarks.train {' '.join(argv)}", file=sys.stderr)
    status = train.main(argv)
    if status:
        raise SystemExit(f"{algo} ended with status {status}")
    return out


def collect(out: str) -> dict:
    """The per-seed final returns, their IQM summary and the eval curves of one run."""
    from benchmarks import harness, stats

    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    final = np.asarray(res["final"]["return"][0], dtype=np.float64)
    x, y = harness.curve(harness.read_log(out), "return", "env_steps", kind="eval")
    return {
        "final_return": final.tolist(),
        "iqm": stats.summary(final),
        "mean": float(final.mean()),
        "std": float(final.std()),
        "curve": {"env_steps": x.tolist(), "return": _nan_to_none(y)},
        **harness.run_record(res),
    }


def _nan_to_none(y: np.ndarray) -> list:
    return [[None if not np.isfinite(v) else float(v) for v in row] for row in y]


def table(algos: dict) -> list[str]:
    lines = [
        "| algorithm | env | seeds | env steps per seed | final return, IQM [95% CI] "
        "| env steps / s (all seeds) | compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for algo, a in algos.items():
        s = a["iqm"]
        lines.append(
            f"| {algo.upper()} | {a['config']['env']} | {len(a['final_return'])} | "
            f"{a['env_steps']:,} | {s['value']:.1f} [{s['low']:.1f}, {s['high']:.1f}] | "
            f"{a['env_steps_per_second']:,.0f} | {a['compile_seconds']:.0f} |"
        )
    return lines


def figure(path: str, algos: dict, env: str) -> None:
    from benchmarks import plots

    x = max((np.asarray(a["curve"]["env_steps"]) for a in algos.values()), key=len)
    width = max(len(a["final_return"]) for a in algos.values())
    y = np.full((len(x), len(algos), width), np.nan)
    for p, a in enumerate(algos.values()):
        xa = np.asarray(a["curve"]["env_steps"])
        ya = np.asarray(a["curve"]["return"], dtype=np.float64)  # None -> nan
        y[np.searchsorted(x, xa), p, : ya.shape[1]] = ya
    plots.learning_curve(
        path,
        x,
        y,
        [a.upper() for a in algos],
        xlabel="env steps (per seed)",
        ylabel="evaluation return",
        title=f"TD3 and SAC on {env}",
    )


def default_steps() -> int:
    import jax

    return CPU_STEPS if jax.default_backend() == "cpu" else GPU_STEPS


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog=PROG, description=__doc__)
    p.add_argument("--env", default=ENV, help="a Brax task, brax:<env>[@backend]")
    p.add_argument("--steps", type=cli.positive_int, default=None, help="env steps per seed")
    p.add_argument("--seeds", type=cli.positive_int, default=SEEDS)
    p.add_argument("--out", default=None, help="results file (default docs/results/brax.json)")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny networks and budget")
    cli.add_layout_flag(p)
    args = p.parse_args(argv)
    if not args.env.startswith("brax:"):
        p.error(f"--env {args.env!r}: expected a Brax task, brax:<env>[@backend]")
    cli.configure_layout(args)
    steps = args.steps or (2_000 if args.quick else default_steps())
    seeds = min(args.seeds, 2) if args.quick else args.seeds
    algos = {a: collect(train_algo(a, args.env, steps, seeds, args.quick)) for a in ALGOS}
    quick_dir = os.path.join(ROOT, "runs", "brax_quick")
    out = args.out or os.path.join(quick_dir if args.quick else ROOT, "docs/results/brax.json")
    lines = table(algos)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        data = {"env": args.env, "algorithms": algos, "published": PUBLISHED, "table": lines}
        json.dump({**data, "provenance": provenance.provenance()}, f, indent=1)
    fig = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(out))), "figures")
    os.makedirs(fig, exist_ok=True)
    figure(os.path.join(fig, "brax.png"), algos, args.env)
    print("\n".join(lines) + "\n\n" + PUBLISHED)
    print(f"[brax_study] wrote {out} and {os.path.join(fig, 'brax.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
