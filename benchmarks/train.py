"""One training entry point for every registered algorithm, through the harness.

    python -m benchmarks.train --algo toy --seeds 8 --sweep decay=0,0.5,0.9 --out runs/toy

Flags before the algorithm's own: `--algo` (a name of `benchmarks.algorithm.registry()`),
`--preset NAME` (the default config is the algorithm's `PRESETS[NAME]`; the algorithm's
flags override it), `--seeds N` (seeds S..S+N-1), `--seed S`, `--total-steps T` (in the
algorithm's units: env steps, samples, ...; also written into a `total_steps` config field
when there is one), `--sweep field=v1,v2,...` (repeatable; float fields are vmapped in one
program, static fields run one program per value into `OUT/field=value/`), `--out DIR`,
and the harness options below. Every field of the algorithm's `Config` is a flag too
(`--learning-rate 0.1`); `--algo toy --help` lists them, with the values of each choice.

Every argument is checked before anything compiles or is written (the algorithm's own
checks of its config run on abstract values, `jax.eval_shape`): a bad one ends the command
with one line naming it and exit status 2. A run that did not complete exits with 3.

`--cpu-layout` picks how the CPU is split into JAX devices (default: one device per core,
`benchmarks.cpu_layout`). `--distributed` joins a multi-process run (`jax.distributed`, CPU
collectives over gloo): every process runs the same command with its own `--process-id`
(or `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`); the grid is split
over every process's devices and process 0 writes the files.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import math
import os
import sys
import typing
from typing import Any, NamedTuple

from benchmarks import algorithm, cli

PROG = "python -m benchmarks.train"


def load_entry(name: str) -> algorithm.Entry:
    """The registered algorithm `name`; a usage error when it cannot be loaded (an unknown
    name lists the registered ones, a missing dependency is named)."""
    try:
        return algorithm.load(name)
    except (ValueError, TypeError, ModuleNotFoundError) as e:
        cli.fail(PROG, f"--algo {name}: {e}")


def load_algorithm(name: str):
    """The module of the registered algorithm `name` (see `load_entry`)."""
    return load_entry(name).module


def _typed(hint: Any, text: str, item: str) -> Any:
    """`text` as a value of the field type `hint`, or a usage error naming `--sweep item`."""
    name = item.split("=", 1)[0]
    if typing.get_origin(hint) is typing.Literal:
        for choice in typing.get_args(hint):
            if str(choice) == text:
                return choice
        choices = ", ".join(repr(c) for c in typing.get_args(hint))
        cli.fail(PROG, f"--sweep {item}: {name} is one of {choices}; got {text!r}")
    casts = {bool: lambda t: {"true": True, "false": False}[t.lower()], int: int, float: float}
    if hint is str:
        return text
    if hint not in casts:
        cli.fail(PROG, f"--sweep {item}: {name} ({hint}) cannot be swept from the command line")
    try:
        return casts[hint](text)
    except (KeyError, ValueError):
        kind = {bool: "true or false", int: "an integer", float: "a number"}[hint]
        cli.fail(PROG, f"--sweep {item}: {name} takes {kind}; got {text!r}")


def parse_sweep(items: list[str], config: Any = None) -> dict[str, list[Any]]:
    """`["tau=0.001,0.005", "target=ema,none"]` -> `{"tau": [0.001, 0.005], ...}`, each value
    of the type of its field of `config` (a usage error names a bad item)."""
    hints = typing.get_type_hints(type(config)) if config is not None else {}
    sweep: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep:
            cli.fail(PROG, f"--sweep {item}: expected field=v1,v2,...")
        if config is not None and name not in hints:
            cli.fail(
                PROG,
                f"--sweep {item}: {type(config).__module__}.Config has no field {name!r}; "
                f"fields: {', '.join(sorted(hints))}",
            )
        texts = [v for v in values.split(",") if v != ""]
        if not texts:
            cli.fail(PROG, f"--sweep {item}: no values")
        hint = hints.get(name, float)
        sweep[name] = [_typed(hint, v, item) for v in texts]
    return sweep


def build_parser() -> cli.Parser:
    p = cli.Parser(prog=PROG, description=__doc__, add_help=False)
    p.add_argument("--algo", default=None, help=f"one of {sorted(algorithm.registry())}")
    p.add_argument(
        "--preset", default=None, help="start from the algorithm's PRESETS[NAME] (e.g. smoke)"
    )
    p.add_argument("--seeds", type=cli.positive_int, default=1, help="number of seeds")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument(
        "--total-steps",
        type=cli.positive_int,
        default=None,
        help="run length in the algorithm's units (default: the config's total_steps)",
    )
    p.add_argument("--sweep", action="append", default=[], help="field=v1,v2,... (repeatable)")
    p.add_argument("--out", default=None, help="output directory (default runs/<algo>)")
    p.add_argument(
        "--segments", type=cli.positive_int, default=50, help="number of logged segments"
    )
    p.add_argument(
        "--checkpoint-every", type=cli.positive_int, default=10, help="segments between checkpoints"
    )
    p.add_argument(
        "--eval-every", type=cli.positive_int, default=5, help="segments between evaluations"
    )
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
        type=cli.positive_int,
        default=None,
        help="vmap at most this many seeds x sweep points per device at a time (the rest run "
        "one chunk after another in the same program; faster once a wide vmap outgrows the "
        "CPU caches)",
    )
    cli.add_layout_flag(p)
    _add_distributed_flags(p)
    p.add_argument("-h", "--help", action="store_true")
    return p


def _add_distributed_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--distributed",
        action="store_true",
        help="join a multi-process run (jax.distributed; CPU collectives over gloo)",
    )
    p.add_argument(
        "--coordinator", default=None, help="HOST:PORT of process 0 (JAX_COORDINATOR_ADDRESS)"
    )
    p.add_argument(
        "--num-processes", type=cli.positive_int, default=None, help="(JAX_NUM_PROCESSES)"
    )
    p.add_argument(
        "--process-id", type=int, default=None, help="this process, 0.. (JAX_PROCESS_ID)"
    )


def start_distributed(args: argparse.Namespace) -> None:
    """Joins the processes of a multi-process run; call it before JAX starts its backends."""
    import jax

    def env_int(name: str) -> int | None:
        text = os.environ.get(name)
        return int(text) if text else None

    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=args.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS"),
            num_processes=args.num_processes or env_int("JAX_NUM_PROCESSES"),
            process_id=args.process_id
            if args.process_id is not None
            else env_int("JAX_PROCESS_ID"),
        )
    except (ValueError, RuntimeError) as e:
        cli.fail(PROG, f"--distributed: {' '.join(str(e).split())}")


class Planned(NamedTuple):
    """One harness run of the command: a static combination of `--sweep` values."""

    combo: dict[str, Any]
    config: Any
    out_dir: str
    iterations: int
    segment_length: int
    label: str


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.algo is None:
        if args.help:
            parser.print_help()
            return 0
        parser.error("--algo is required")
    cli.configure_layout(args)
    if args.distributed:
        start_distributed(args)
    entry = load_entry(args.algo)
    config = _parse_config(entry, args, rest)
    sweep = parse_sweep(args.sweep, config)
    static = {k: v for k, v in sweep.items() if not _is_leaf_field(config, k)}
    vmapped = {k: v for k, v in sweep.items() if k not in static}
    runs = [_plan(args, rest, entry, config, combo, vmapped) for combo in _combos(static)]
    return _train(args, entry, runs, vmapped)


def _parse_config(entry: algorithm.Entry, args: argparse.Namespace, rest: list[str]):
    """The algorithm's config: the preset (or the entry's default) and its own flags."""
    import tyro

    prog = f"{PROG} --algo {args.algo}"
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(sys.stderr if args.help else captured):
            config = tyro.cli(
                entry.module.Config,
                args=rest + (["--help"] if args.help else []),
                default=_preset(entry, args.preset),
                prog=prog,
            )
    except SystemExit as stop:
        if stop.code in (0, None):
            raise
        cli.fail(prog, _one_line(captured.getvalue()))
    if args.total_steps is not None and "total_steps" in _field_names(config):
        config = dataclasses.replace(config, total_steps=args.total_steps)
    return config


def _one_line(text: str) -> str:
    """tyro's framed, multi-line error as one line: the frame and its help pointer dropped."""
    lines = [line.strip(" │╮╰╯─┃━") for line in text.splitlines() if not line.startswith("╭")]
    kept = [
        line
        for line in lines
        if line and "For full helptext" not in line and not set(line) <= set("─━ ")
    ]
    message = " ".join(kept) or "invalid arguments"
    return f"{message} (see --help)"


def _combos(static: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(static, vals, strict=True)) for vals in itertools.product(*static.values())]


def _plan(args, rest, entry, config, combo, vmapped) -> Planned:
    """One run, checked as the harness would check it, before anything compiles or is
    written; a usage error (exit status 2) names what is wrong."""
    from benchmarks import harness
    from benchmarks.harness import checkpoints

    label = " ".join(
        [f"--algo {args.algo}"]
        + ([f"--preset {args.preset}"] if args.preset else [])
        + rest
        + [f"--sweep {k}={v}" for k, v in combo.items()]
    )
    cfg = dataclasses.replace(config, **combo) if combo else config
    total = args.total_steps if args.total_steps is not None else getattr(cfg, "total_steps", None)
    if total is None:
        cli.fail(PROG, f"{label}: --total-steps is required (the config has no total_steps)")
    _, per_iteration = harness.units(entry.module, cfg)
    iterations = max(1, math.ceil(total / per_iteration))
    out = args.out or os.path.join("runs", args.algo)
    sub = os.path.join(out, ",".join(f"{k}={v}" for k, v in combo.items())) if combo else out
    saved = None if args.no_resume else checkpoints.saved_meta(os.path.abspath(sub))
    segment_length = (
        int(saved["segment_length"])  # a resumed (or extended) run keeps its segments
        if saved is not None and "segment_length" in saved
        else max(1, math.ceil(iterations / args.segments))
    )
    try:
        harness.check(
            entry.module,
            cfg,
            iterations=iterations,
            seeds=args.seeds,
            seed=args.seed,
            sweep=vmapped,
            segment_length=segment_length,
            out_dir=sub,
            resume=not args.no_resume,
            name=entry.name,
            on_nonfinite=args.on_nonfinite,
            checkpoint_every=args.checkpoint_every,
            eval_every=args.eval_every,
            seed_chunk=args.seed_chunk,
        )
    except ValueError as e:
        cli.fail(PROG, f"{label}: {_named(' '.join(str(e).split()), entry)}")
    return Planned(combo, cfg, sub, iterations, segment_length, label)


def _named(message: str, entry) -> str:
    """`message` with a leading module name replaced by the alias the user asked for: a
    refusal from `agents.td3` on `--algo ddpg` says "ddpg needs ...", not "td3 needs ..."."""
    module = entry.module.__name__.rsplit(".", 1)[-1]
    if entry.preset is not None and message.startswith(f"{module} "):
        return f"{entry.name}{message[len(module) :]}"
    return message


def _train(args, entry, runs: list[Planned], vmapped) -> int:
    """Runs every planned run; writes `summary.json` when there are several."""
    import jax

    from benchmarks import harness

    lead = jax.process_index() == 0
    summary, status = [], 0
    for run in runs:
        unit_name, per_iteration = harness.units(entry.module, run.config)
        if lead:
            print(
                f"[train] {args.algo} {unit_name}={run.iterations * per_iteration} "
                f"seeds={args.seeds} sweep={vmapped or '{}'} {run.combo or ''} -> {run.out_dir}",
                file=sys.stderr,
            )
        try:
            result = harness.run(
                entry.module,
                run.config,
                iterations=run.iterations,
                seeds=args.seeds,
                seed=args.seed,
                sweep=vmapped,
                segment_length=run.segment_length,
                out_dir=run.out_dir,
                checkpoint_every=args.checkpoint_every,
                eval_every=args.eval_every,
                resume=not args.no_resume,
                on_nonfinite=args.on_nonfinite,
                progress=not args.no_progress,
                scan=not args.host_loop,
                seed_chunk=args.seed_chunk,
                name=entry.name,
            )
        except (harness.checkpoints.Incompatible, RuntimeError) as e:
            cli.fail(PROG, f"{run.label}: {' '.join(str(e).split())}")
        summary.append(
            {
                "static": run.combo,
                "out_dir": run.out_dir,
                "status": result.status,
                **_headline(result.results),
            }
        )
        if result.status != "completed":
            status = 3
    if lead and [run.combo for run in runs] != [{}]:
        out = args.out or os.path.join("runs", args.algo)
        with open(os.path.join(out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
    if lead:
        for row in summary:
            print(json.dumps(row))
    return status


def _preset(entry: algorithm.Entry, preset: str | None):
    """The default config: `PRESETS[preset]` when one is named, else the entry's own."""
    if preset is None:
        return entry.config
    if preset not in entry.module.PRESETS:
        cli.fail(
            PROG, f"--preset {preset!r}: {entry.module.__name__} has {sorted(entry.module.PRESETS)}"
        )
    return entry.module.PRESETS[preset]


def _field_names(config) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}


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
