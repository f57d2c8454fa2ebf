"""One training entry point for every registered algorithm, through the harness.

    python -m benchmarks.train --algo toy --seeds 8 --sweep decay=0,0.5,0.9 --out runs/toy

Flags before the algorithm's own: `--algo` (a name of `benchmarks.algorithm.registry()`),
`--preset NAME` (the default config is the algorithm's `PRESETS[NAME]`; the algorithm's
flags override it), `--seeds N` (seeds S..S+N-1), `--seed S`, `--total-steps T` (in the
algorithm's units: env steps, samples, ...; also written into a `total_steps` config field
when there is one), `--sweep field=v1,v2,...` (repeatable; float fields are vmapped in one
program, static fields run one program per value into `OUT/field=value/`), `--out DIR`,
and the harness options below. Every field of the algorithm's `Config` is a flag too
(`--learning-rate 0.1`); `--algo toy --help` lists them.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
from typing import Any

from benchmarks import algorithm


def load_entry(name: str) -> algorithm.Entry:
    """The registered algorithm `name`; exits saying why when it cannot be loaded (an
    unknown name lists the registered ones, a missing dependency is named)."""
    try:
        return algorithm.load(name)
    except (ValueError, TypeError, ModuleNotFoundError) as e:
        raise SystemExit(f"--algo {name}: {e}") from e


def load_algorithm(name: str):
    """The module of the registered algorithm `name` (see `load_entry`)."""
    return load_entry(name).module


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_sweep(items: list[str]) -> dict[str, list[Any]]:
    """`["tau=0.001,0.005", "lr=1e-3"]` -> `{"tau": [0.001, 0.005], "lr": [0.001]}`."""
    sweep: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--sweep takes field=v1,v2,...; got {item!r}")
        name, values = item.split("=", 1)
        name = name.strip().replace("-", "_")
        sweep[name] = [_parse_value(v) for v in values.split(",") if v != ""]
        if not sweep[name]:
            raise SystemExit(f"--sweep {name} has no values")
    return sweep


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.train",
        description=__doc__,
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--algo", required=True, help=f"one of {sorted(algorithm.registry())}")
    p.add_argument(
        "--preset", default=None, help="start from the algorithm's PRESETS[NAME] (e.g. smoke)"
    )
    p.add_argument("--seeds", type=int, default=1, help="number of seeds")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="run length in the algorithm's units (default: the config's total_steps)",
    )
    p.add_argument("--sweep", action="append", default=[], help="field=v1,v2,... (repeatable)")
    p.add_argument("--out", default=None, help="output directory (default runs/<algo>)")
    p.add_argument("--segments", type=int, default=50, help="number of logged segments")
    p.add_argument("--checkpoint-every", type=int, default=10, help="segments between checkpoints")
    p.add_argument("--eval-every", type=int, default=5, help="segments between evaluations")
    p.add_argument(
        "--no-resume", action="store_true", help="start over even if OUT has a checkpoint"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--on-nonfinite", choices=("stop", "continue"), default="stop")
    p.add_argument(
        "--host-loop",
        action="store_true",
        help="one jitted step per call instead of lax.scan (conv nets on CPU)",
    )
    p.add_argument(
        "--seed-chunk",
        type=int,
        default=None,
        help="vmap at most this many seeds x sweep points per device at a time (the rest run "
        "one chunk after another in the same program; faster once a wide vmap outgrows the "
        "CPU caches)",
    )
    p.add_argument("-h", "--help", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    import tyro

    from benchmarks import harness

    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.help and args.algo is None:
        parser.print_help()
        return 0
    entry = load_entry(args.algo)
    algo = entry.module
    config = tyro.cli(
        algo.Config,
        args=rest + (["--help"] if args.help else []),
        default=_preset(entry, args.preset),
        prog=f"python -m benchmarks.train --algo {args.algo}",
    )
    names = {f.name for f in dataclasses.fields(config)}
    if args.total_steps is not None and "total_steps" in names:
        config = dataclasses.replace(config, total_steps=args.total_steps)
    unit_name, per_iteration = harness.units(algo, config)
    total = (
        args.total_steps if args.total_steps is not None else getattr(config, "total_steps", None)
    )
    if total is None:
        raise SystemExit("--total-steps is required for this algorithm")
    iterations = max(1, math.ceil(total / per_iteration))
    segment_length = max(1, math.ceil(iterations / max(1, args.segments)))

    sweep = parse_sweep(args.sweep)
    static = {k: v for k, v in sweep.items() if k in names and not _is_leaf_field(config, k)}
    vmapped = {k: v for k, v in sweep.items() if k not in static}
    out = args.out or os.path.join("runs", args.algo)
    combos = [dict(zip(static, vals, strict=True)) for vals in itertools.product(*static.values())]
    summary = []
    status = 0
    for combo in combos:
        cfg = dataclasses.replace(config, **combo) if combo else config
        sub = os.path.join(out, ",".join(f"{k}={v}" for k, v in combo.items())) if combo else out
        print(
            f"[train] {args.algo} {unit_name}={iterations * per_iteration} seeds={args.seeds} "
            f"sweep={vmapped or '{}'} {combo or ''} -> {sub}",
            file=sys.stderr,
        )
        result = harness.run(
            algo,
            cfg,
            iterations=iterations,
            seeds=args.seeds,
            seed=args.seed,
            sweep=vmapped,
            segment_length=segment_length,
            out_dir=sub,
            checkpoint_every=args.checkpoint_every,
            eval_every=args.eval_every,
            resume=not args.no_resume,
            on_nonfinite=args.on_nonfinite,
            progress=not args.no_progress,
            scan=not args.host_loop,
            seed_chunk=args.seed_chunk,
            name=entry.name,
        )
        summary.append(
            {"static": combo, "out_dir": sub, "status": result.status, **_headline(result.results)}
        )
        if result.status != "completed":
            status = 3
    if combos != [{}]:
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
    for row in summary:
        print(json.dumps(row))
    return status


def _preset(entry: algorithm.Entry, preset: str | None):
    """The default config: `PRESETS[preset]` when one is named, else the entry's own."""
    if preset is None:
        return entry.config
    if preset not in entry.module.PRESETS:
        raise SystemExit(
            f"--preset {preset!r}: {entry.module.__name__} has {sorted(entry.module.PRESETS)}"
        )
    return entry.module.PRESETS[preset]


def _is_leaf_field(config, name: str) -> bool:
    field = next(f for f in dataclasses.fields(config) if f.name == name)
    return field.metadata.get("pytree_node", True)


def _headline(results: dict) -> dict:
    """A short summary of results.json: final metrics (IQM over seeds) and throughput."""
    from benchmarks.stats import iqm

    rate = f"{results['units']}_per_second"
    out = {
        rate: results.get(rate),
        "compile_seconds": results.get("compile_seconds"),
        "run_seconds": results.get("run_seconds"),
    }
    labels = [
        ", ".join(f"{k}={v}" for k, v in pt.items() if k != "seed")
        for pt in results["grid"][:: max(1, len(results["seeds"]))]
    ]
    for name, per_point in results.get("final", {}).items():
        out[f"final_{name}_iqm"] = {
            (label or "all"): float(iqm([v for v in seeds if v is not None]))
            if any(v is not None for v in seeds)
            else None
            for label, seeds in zip(labels, per_point, strict=True)
        }
    return out


if __name__ == "__main__":
    sys.exit(main())
