"""DQN on the MinAtar games gymnax ships, with the MinAtar paper's settings: one command.

    python -m benchmarks.minatar                        # every game, 6 seeds, 100k frames
    python -m benchmarks.minatar --games Breakout --frames 500000
    python -m benchmarks.minatar --quick                # a smoke run of a minute or two

Each game is one `benchmarks.train` run of `dqn.PRESETS["minatar"]` (Young & Tian 2019's
DQN; see its docstring), all its seeds vmapped in one program, in `OUT/<game>/`; a finished
game is skipped and an interrupted one resumes from its checkpoint, so the command can be
stopped and run again. Then it writes `docs/results/minatar_dqn.json` (provenance; per game
and seed: the training return over the last 10% of frames, the greedy evaluation return at
the end, learning curves, throughput) and `docs/figures/minatar_dqn.png`, and prints a
table beside the paper's DQN. `--quick` shrinks everything and writes its files under OUT.

A frame is one environment step (MinAtar has no frame skipping). The default budget,
100k frames per seed, is what 5 games x 6 seeds take in about an hour on 2 CPU cores; the
paper trains 5M frames. The training return is the metric the paper plots: the return of
the training episodes, with the behaviour policy's epsilon.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from benchmarks import cli, provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROG = "python -m benchmarks.minatar"
GAMES = ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")

PAPER_DQN = {
    "Asterix": {1_000_000: 7.0, 2_000_000: 14.3},
    "Breakout": {1_000_000: 9.2, 2_000_000: 9.6},
    "Freeway": {1_000_000: 48.0, 2_000_000: 51.0},
    "Seaquest": {1_000_000: 1.0, 2_000_000: 4.9},
    "SpaceInvaders": {1_000_000: 33.0, 2_000_000: 42.0},
}
"""The MinAtar paper's DQN (Young & Tian 2019, the learning-curve figure of DQN with
replay and target network): average training return at 1M and 2M frames, read off the
figure by eye, so approximate (about +-1 on Breakout, Seaquest and Asterix)."""

QUICK = ["--learning-starts", "500", "--buffer-size", "2000", "--epsilon-steps", "1000"]
QUICK += ["--epsilon-delay", "500", "--target-every", "100", "--eval-episodes", "2"]


def build_parser() -> cli.Parser:
    p = cli.Parser(prog=PROG, description=__doc__)
    p.add_argument("--frames", type=cli.positive_int, default=None, help="per seed (100000)")
    p.add_argument("--seeds", type=cli.positive_int, default=None, help="per game (6)")
    p.add_argument("--games", default=",".join(GAMES), help=f"comma-separated, of {GAMES}")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "minatar"), help="runs directory")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 seeds, 3000 frames")
    cli.add_layout_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    games = [g.strip() for g in args.games.split(",") if g.strip()]
    unknown = [g for g in games if g not in GAMES]
    if unknown or not games:
        cli.fail(PROG, f"--games {args.games}: the games are {', '.join(GAMES)}")
    frames = args.frames or (3_000 if args.quick else 100_000)
    seeds = args.seeds or (2 if args.quick else 6)
    cli.configure_layout(args)
    started = provenance.now()
    for game in games:
        run_game(game, frames, seeds, args)
    results_dir = args.out if args.quick else os.path.join(ROOT, "docs", "results")
    figure_dir = args.out if args.quick else os.path.join(ROOT, "docs", "figures")
    data = collect(games, args.out, started)
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "minatar_dqn.json"), "w") as f:
        json.dump(data, f, indent=1)
    os.makedirs(figure_dir, exist_ok=True)
    figure(data, os.path.join(figure_dir, "minatar_dqn.png"))
    print(report(data))
    return 0


def run_game(game: str, frames: int, seeds: int, args) -> None:
    """Trains DQN on `game` (resuming, or skipping a finished run)."""
    from benchmarks import train

    out = os.path.join(args.out, game)
    if _finished(out, frames, seeds):
        print(f"[minatar] {game}: done, skipped ({out})", file=sys.stderr)
        return
    argv = ["--algo", "dqn", "--preset", "minatar", "--env", f"{game}-MinAtar"]
    argv += ["--seeds", str(seeds), "--total-steps", str(frames), "--out", out]
    argv += ["--segments", "50", "--eval-every", "10", "--no-progress"]
    argv += QUICK if args.quick else []
    print(f"[minatar] python -m benchmarks.train {' '.join(argv)}", file=sys.stderr)
    status = train.main(argv)
    if status:
        raise SystemExit(f"{game} ended with status {status}")


def _finished(out: str, frames: int, seeds: int) -> bool:
    from benchmarks import harness

    res = harness.completed(out)
    return res is not None and res["env_steps"] >= frames and len(res["seeds"]) == seeds


def collect(games: list[str], out: str, started: str) -> dict:
    """The results file: per game, per seed returns and curves, and the paper's DQN."""
    from benchmarks import harness

    data = {"provenance": provenance.provenance(started), "games": {}}
    for game in games:
        run_dir = os.path.join(out, game)
        with open(os.path.join(run_dir, "results.json")) as f:
            res = json.load(f)
        log = harness.read_log(run_dir)
        x, y = harness.curve(log, "episode_return", "env_steps", kind="train")
        xe, ye = harness.curve(log, "return", "env_steps", kind="eval")
        frames = int(res["env_steps"])
        last = x > 0.9 * frames
        paper = PAPER_DQN[game]
        data["games"][game] = {
            "env": f"{game}-MinAtar",
            "seeds": res["seeds"],
            "frames": frames,
            "train_return": np.nanmean(y[last], axis=0).tolist(),
            "eval_return": [v for row in res["final"]["return"] for v in row],
            "curve": {"frames": x.tolist(), "train_return": y.tolist()},
            "eval_curve": {"frames": xe.tolist(), "return": ye.tolist()},
            "paper_dqn": {str(k): v for k, v in paper.items()},
            "paper_dqn_at_frames": paper.get(frames),
            "env_steps_per_second": res["env_steps_per_second"],
            "compile_seconds": res["compile_seconds"],
            "run_seconds": res["run_seconds"],
            "devices": res["devices"],
            "config": res["config"],
            "run_provenance": res.get("provenance"),
        }
    return data


def report(data: dict) -> str:
    """A Markdown table: our training and evaluation returns beside the paper's DQN."""
    from benchmarks import stats

    lines = [
        "| game | seeds | frames | training return, last 10% (IQM [95% CI]) | greedy eval "
        "(IQM) | paper DQN @1M / 2M (read off its figure) | env steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for game, g in data["games"].items():
        s = stats.summary(g["train_return"])
        paper = " / ".join(f"{v:g}" for v in g["paper_dqn"].values())
        lines.append(
            f"| {game} | {len(g['seeds'])} | {g['frames']:,} | {s['value']:.2f} "
            f"[{s['low']:.2f}, {s['high']:.2f}] | {stats.iqm(np.asarray(g['eval_return'])):.2f} "
            f"| {paper} | {g['env_steps_per_second']:,.0f} |"
        )
    return "\n".join(lines)


def figure(data: dict, path: str) -> None:
    """One panel per game: the training return's IQM over seeds against frames."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks import stats

    games = list(data["games"])
    fig, axes = plt.subplots(1, len(games), figsize=(3.2 * len(games), 3.0), dpi=110)
    for ax, game in zip(np.atleast_1d(axes), games, strict=True):
        g = data["games"][game]
        x = np.asarray(g["curve"]["frames"])
        y = np.asarray(g["curve"]["train_return"], dtype=np.float64)
        ok = np.all(np.isfinite(y), axis=-1)
        if ok.any():
            low, high = stats.bootstrap_ci(y[ok], stats.iqm)
            ax.plot(x[ok], stats.iqm(y[ok], axis=-1), lw=1.5, label="DQN (ours)")
            ax.fill_between(x[ok], low, high, alpha=0.2, lw=0)
        for frames, value in g["paper_dqn"].items():
            if int(frames) <= 1.05 * x.max(initial=0):
                ax.plot([int(frames)], [value], "k^", label=f"paper @{int(frames):,}")
        ax.set_title(game, fontsize=10)
        ax.set_xlabel("frames (per seed)")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("training return (IQM, 95% CI)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
