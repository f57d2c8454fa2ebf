"""Throughput of the RL agents against the number of seeds, with compile time and utilisation.

    python -m benchmarks.rl_throughput

For DQN (the default CartPole config) and TD3 (the default Pendulum config), and 1, 8, 32
and 128 seeds, one harness run per point, every iteration doing its full work (learning
from the first step), timed after `block_until_ready`, compile time apart. The step
budgets are short (DQN: 1,000 iterations of 10 envs per seed, 400 at 128 seeds; TD3: 400,
100, 40, 16 env steps per seed): the rate of a run does not depend on its length once
learning has started. Two CPU layouts, each in its own process:

- `split` (the seed sweep): one device per core, one XLA thread each
  (`JAX_NUM_CPU_DEVICES`, `PJRT_NPROC=1`); the harness spreads the seeds over the devices;
- `default` (8 seeds, for comparison): one JAX CPU device, XLA's thread pools at one
  thread per core.

Utilisation is the matrix-multiply FLOPs the run must do (counted from the layer sizes:
forward passes, and weight and input gradients where the algorithm needs them) per
second, divided by the rate of a large float32 GEMM measured in the same process and
layout (on every device at once for `split`).

In the same script: the speed anchor (`benchmarks.dqn_anchor`, a DQN laid out as
PureJaxRL's: `jit(vmap(train))`, unbatched counters, flashbax's flat buffer) for 8 seeds
and for 1 seed in the default layout (100k env steps per seed); the project's DQN
with flashbax's item buffer instead of the ring buffer (8 seeds); and, in the split
layout, DQN and TD3 at 8, 32 and 128 seeds with `seed_chunk=2` (each device runs its
seeds two at a time inside the one program).

Each agent measurement times 4 segments separately (the harness logs each segment's
seconds) and reports the median segment, so a burst of another job on a shared machine
does not decide the number; the whole-run rate is kept beside it in the JSON.

Each measurement is cached in `runs/rl/throughput/`; running the command again skips
what is there (`--fresh` redoes it). Results: `docs/results/rl_throughput.json` (a list of
parts, each with the provenance of the process that measured it, its CPU layout included),
`docs/figures/rl_throughput.png`, and a Markdown table on stdout. The command sets each
worker's layout itself (`benchmarks.cpu_layout.configure`), so it has no `--cpu-layout`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks import cli, cpu_layout, provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "runs", "rl", "throughput")
SEEDS = (1, 8, 32, 128)
SEGMENTS = 4  # timed segments per measurement; the median segment is reported
CHUNK = 2  # seeds per device at a time in the chunked rows (harness `seed_chunk`)
ANCHOR_STEPS = 100_000  # env steps per seed of the anchor runs


# --------------------------------------------------------------------------- FLOPs


def mlp_flops(sizes, batch, *, weight_grads=False, input_grads=False) -> float:
    """Matmul FLOPs of an MLP with layer sizes `sizes` on `batch` inputs: the forward pass,
    plus weight gradients and/or input gradients (all layers) of the backward pass."""
    per_layer = [2.0 * a * b * batch for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    total = sum(per_layer)
    if weight_grads:
        total += sum(per_layer)
    if input_grads:
        total += sum(per_layer)
    return total


def dqn_flops_per_iteration(c, obs_size: int, num_actions: int) -> float:
    """Per seed and iteration after learning starts (`agents.dqn`)."""
    sizes = [obs_size, *c.hidden, num_actions]
    act = mlp_flops(sizes, c.num_envs)
    online = mlp_flops(sizes, c.batch_size, weight_grads=True, input_grads=True)
    online -= 2.0 * sizes[0] * sizes[1] * c.batch_size  # no gradient for the observations
    target = mlp_flops(sizes, c.batch_size) * (2 if c.double else 1)
    return act + (online + target) * c.num_envs / c.train_every


def td3_flops_per_iteration(c, obs_size: int, action_size: int) -> float:
    """Per seed and iteration after learning starts (`agents.td3`, one gradient step per
    env step; the actor step every `policy_delay` of them)."""
    actor = [obs_size, *c.hidden, action_size]
    critic = [obs_size + action_size, *c.hidden, 1]
    b = c.batch_size
    critic_step = (
        mlp_flops(actor, b)  # target actor at s_t
        + c.num_critics * mlp_flops(critic, b)  # target critics
        + c.num_critics * mlp_flops(critic, b, weight_grads=True, input_grads=True)
        - c.num_critics * 2.0 * critic[0] * critic[1] * b  # no gradient for (s, a) there
    )
    actor_step = (
        mlp_flops(actor, b, weight_grads=True, input_grads=True)
        - 2.0 * actor[0] * actor[1] * b
        + mlp_flops(critic, b, input_grads=True)
    )  # Q_1 and its gradient in a
    return c.num_envs * (critic_step + actor_step / c.policy_delay) + mlp_flops(actor, c.num_envs)


# --------------------------------------------------------------------------- measurements


def gemm_rate(n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a float32 n x n GEMM on every device at once."""
    import jax
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    devices = jax.devices()
    mesh = Mesh(np.asarray(devices), ("d",))
    k = len(devices)
    a = jax.random.normal(jax.random.key(0), (k, n, n))
    b = jax.random.normal(jax.random.key(1), (k, n, n))
    f = jax.jit(
        jax.shard_map(lambda x, y: x @ y, mesh=mesh, in_specs=P("d"), out_specs=P("d"))
        if k > 1
        else (lambda x, y: x @ y)
    )
    jax.block_until_ready(f(a, b))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a, b))
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 * k / best


def segment_rates(algo, config, *, seeds, segments, length, seed_chunk=None):
    """Runs `algo` for `segments` segments of `length` iterations (learning from the
    start, no evaluation or checkpoints) and returns `(results, env steps/s per segment)`:
    each segment timed on its own (the harness logs its seconds)."""
    import tempfile

    from benchmarks import harness

    with tempfile.TemporaryDirectory() as out:
        res = harness.run(
            algo,
            config,
            iterations=length * segments,
            seeds=seeds,
            segment_length=length,
            out_dir=out,
            checkpoint_every=1_000_000,
            eval_every=1_000_000,
            progress=False,
            plot=False,
            seed_chunk=seed_chunk,
        ).results
        seconds = [r["seconds"] for r in harness.read_log(out) if "seconds" in r]
    return res, length * config.num_envs * seeds / np.asarray(seconds)


def measure_agent(
    algo_name: str, seeds: int, replay_kind: str = "ring", seed_chunk: int | None = None
) -> dict:
    from agents import dqn, envs, td3

    if algo_name == "dqn":
        algo, config = dqn, dqn.Config(learning_starts=0, replay=replay_kind)
        env, params = envs.make(config.env)
        flops = dqn_flops_per_iteration(
            config,
            envs.observation_size(env, params, config.env),
            envs.num_actions(env, params, config.env, "dqn"),
        )
        iterations = 1_000 if seeds <= 32 else 400
    else:
        algo, config = td3, td3.Config(learning_starts=0)
        env, params = envs.make(config.env)
        low, _ = envs.action_bounds(env, params, config.env, "td3")
        flops = td3_flops_per_iteration(
            config, envs.observation_size(env, params, config.env), low.shape[0]
        )
        iterations = {1: 400, 8: 100, 32: 40, 128: 16}.get(seeds, 40)
    res, per_segment = segment_rates(
        algo,
        config,
        seeds=seeds,
        segments=SEGMENTS,
        length=iterations // SEGMENTS,
        seed_chunk=seed_chunk,
    )
    # the median segment: one slow segment (another job on a shared machine) does not count
    rate = float(np.median(per_segment))
    return {
        "algo": algo_name,
        "replay": replay_kind,
        "seeds": seeds,
        "seed_chunk": res["seed_chunk"],
        "iterations": iterations,
        "env_steps_per_second": rate,
        "env_steps_per_second_segments": per_segment.tolist(),
        "env_steps_per_second_whole_run": res["env_steps_per_second"],
        "compile_seconds": res["compile_seconds"],
        "run_seconds": res["run_seconds"],
        "devices": res["devices"],
        "flops_per_second": flops * rate / config.num_envs,
        "flops_per_iteration_per_seed": flops,
    }


def interleaved(rounds: int = 4, segments: int = 3, length: int = 250) -> dict:
    """DQN variants measured round-robin in one process: segments of `length` iterations,
    `rounds` rounds over the programs, so that every variant sees the same machine."""
    from agents import dqn

    variants = {
        "ring, 8 seeds": ("ring", 8, None),
        "ring, 8 seeds, seed_chunk 2": ("ring", 8, 2),
        "flashbax item buffer, 8 seeds": ("flashbax", 8, None),
        "flashbax item buffer, 8 seeds, seed_chunk 2": ("flashbax", 8, 2),
        "ring, 32 seeds": ("ring", 32, None),
        "ring, 32 seeds, seed_chunk 2": ("ring", 32, 2),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (replay, seeds, chunk) in variants.items():
            config = dqn.Config(learning_starts=0, replay=replay)
            _, per_segment = segment_rates(
                dqn, config, seeds=seeds, segments=segments, length=length, seed_chunk=chunk
            )
            rates[name] += per_segment.tolist()
            print(f"[rl_throughput] {name}: {np.median(rates[name]):,.0f}", file=sys.stderr)
    return {
        name: {"median": float(np.median(v)), "q25": float(np.percentile(v, 25)),
               "q75": float(np.percentile(v, 75)), "segments": v}
        for name, v in rates.items()
    }  # fmt: skip


def measure_anchor(seeds: int, total_steps: int) -> dict:
    import jax

    from agents import dqn
    from benchmarks import dqn_anchor, stats

    config = dqn.Config()
    train = jax.jit(jax.vmap(dqn_anchor.make_train(config, total_steps)))
    keys = jax.vmap(jax.random.key)(np.arange(seeds))
    t = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    params, _ = jax.block_until_ready(compiled(keys))
    run_s = time.perf_counter() - t
    evaluate = jax.jit(jax.vmap(lambda p, k: dqn_anchor.greedy_return(p, k, config)))
    eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    final = np.asarray(evaluate(params, eval_keys)).tolist()
    sizes = [4, *config.hidden, 2]
    flops = dqn_flops_per_iteration(config, sizes[0], sizes[-1])
    iterations = total_steps // config.num_envs
    # the conds stay conds (see benchmarks.dqn_anchor): no gradient steps before learning starts
    learning = max(0, total_steps - config.learning_starts) // config.num_envs
    acting = mlp_flops(sizes, config.num_envs)
    total_flops = flops * learning + acting * (iterations - learning)
    return {
        "algo": "dqn anchor (PureJaxRL layout)",
        "seeds": seeds,
        "env_steps": total_steps,
        "env_steps_per_second": seeds * total_steps / run_s,
        "compile_seconds": compile_s,
        "run_seconds": run_s,
        "final_return": final,
        "final_return_iqm": float(stats.iqm(final)),
        "flops_per_second": total_flops * seeds / run_s,
    }


def worker(layout: str, part: str) -> dict:
    """Runs one part in this process and returns it with its provenance; sets the CPU
    layout first (when JAX has not started)."""
    cpu_layout.configure(layout)
    out = {"layout": layout, "part": part, "gemm_flops_per_second": gemm_rate()}
    if part in ("dqn", "td3"):
        out["rows"] = [measure_agent(part, s) for s in (SEEDS if layout == "split" else (8,))]
        if layout == "split":  # a device's seeds CHUNK at a time
            out["rows"] += [measure_agent(part, s, seed_chunk=CHUNK) for s in SEEDS[1:]]
    elif part == "flashbax":
        out["rows"] = [measure_agent("dqn", 8, "flashbax")]
    elif part == "interleaved":
        out["rows"], out["interleaved"] = [], interleaved()
    elif part == "anchor":
        out["rows"] = [measure_anchor(8, ANCHOR_STEPS), measure_anchor(1, ANCHOR_STEPS)]
    for row in out["rows"]:
        row["utilisation"] = row["flops_per_second"] / out["gemm_flops_per_second"]
    out["provenance"] = provenance.provenance()
    return out


# --------------------------------------------------------------------------- driver


PARTS = [
    ("split", "dqn"),
    ("split", "td3"),
    ("default", "dqn"),
    ("default", "td3"),
    ("split", "flashbax"),
    ("default", "anchor"),
]


def _run_part(layout: str, part: str, fresh: bool) -> dict:
    path = os.path.join(CACHE, f"{layout}_{part}.json")
    if os.path.exists(path) and not fresh:
        with open(path) as f:
            return json.load(f)
    cmd = [sys.executable, "-m", "benchmarks.rl_throughput", "--worker", layout, part]
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "JAX_NUM_CPU_DEVICES")}
    print(f"[rl_throughput] {layout} {part} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{layout} {part} failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    os.makedirs(CACHE, exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result


def _table(results: list[dict]) -> str:
    lines = [
        "| layout | algo | seeds | env steps / s | compile s | matmul GFLOP/s | GEMM GFLOP/s "
        "| utilisation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for row in res["rows"]:
            name = row["algo"] + (f" ({row['replay']} buffer)" if row.get("replay") else "")
            if row.get("seed_chunk"):
                name += f", {row['seed_chunk']} seeds per device at a time"
            lines.append(
                f"| {res['layout']} | {name} | {row['seeds']} | "
                f"{row['env_steps_per_second']:,.0f} | {row['compile_seconds']:.1f} | "
                f"{row['flops_per_second'] / 1e9:.1f} | "
                f"{res['gemm_flops_per_second'] / 1e9:.1f} | {100 * row['utilisation']:.0f}% |"
            )
    return "\n".join(lines)


def _figure(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for ax, algo in zip(axes, ("dqn", "td3"), strict=True):
        for res in results:
            for chunked in (False, True):
                rows = [
                    r
                    for r in res["rows"]
                    if r["algo"] == algo
                    and r.get("replay") == "ring"
                    and bool(r.get("seed_chunk")) == chunked
                ]
                if not rows:
                    continue
                label = res["layout"] + (f", {CHUNK} seeds per device at a time" if chunked else "")
                x = [r["seeds"] for r in rows]
                ax.plot(x, [r["env_steps_per_second"] for r in rows], "o-", label=label)
        if algo == "dqn":
            for res in results:
                for r in res["rows"]:
                    if r["algo"].startswith("dqn anchor"):
                        ax.plot(r["seeds"], r["env_steps_per_second"], "kx", ms=9)
                        ax.annotate("anchor", (r["seeds"], r["env_steps_per_second"]), fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("seeds (vmapped)")
        ax.set_ylabel("env steps / s (all seeds)")
        ax.set_title(f"{algo.upper()} ({'CartPole-v1' if algo == 'dqn' else 'Pendulum-v1'})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = cli.Parser(prog="python -m benchmarks.rl_throughput", description=__doc__)
    p.add_argument("--worker", nargs=2, metavar=("LAYOUT", "PART"), help=argparse.SUPPRESS)
    p.add_argument(
        "--only",
        default=None,
        choices=[f"{layout}:{part}" for layout, part in PARTS],
        help="LAYOUT:PART, e.g. split:dqn",
    )
    p.add_argument("--fresh", action="store_true", help="redo cached measurements")
    p.add_argument(
        "--interleaved",
        action="store_true",
        help="only the round-robin comparison of ring / flashbax buffers and seed chunks "
        "(DQN, split layout, one process) into docs/results/rl_throughput_interleaved.json",
    )
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return 0
    if args.interleaved:
        res = _run_part("split", "interleaved", args.fresh)
        with open(
            os.path.join(ROOT, "docs", "results", "rl_throughput_interleaved.json"), "w"
        ) as f:
            json.dump(res, f, indent=1)
        for name, v in res["interleaved"].items():
            print(f"| {name} | {v['median']:,.0f} [{v['q25']:,.0f}, {v['q75']:,.0f}] |")
        return 0
    results = []
    for layout, part in PARTS:
        if args.only and args.only != f"{layout}:{part}":
            path = os.path.join(CACHE, f"{layout}_{part}.json")
            if os.path.exists(path):
                with open(path) as f:
                    results.append(json.load(f))
            continue
        results.append(_run_part(layout, part, args.fresh))
    os.makedirs(os.path.join(ROOT, "docs", "results"), exist_ok=True)
    os.makedirs(os.path.join(ROOT, "docs", "figures"), exist_ok=True)
    with open(os.path.join(ROOT, "docs", "results", "rl_throughput.json"), "w") as f:
        json.dump(results, f, indent=1)
    _figure(results, os.path.join(ROOT, "docs", "figures", "rl_throughput.png"))
    print(_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
