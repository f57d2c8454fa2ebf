"""Self-supervised studies: BYOL's target-momentum ablation and MoCo v2 / v3 vs BYOL.

    python -m benchmarks.ssl_study ablation   # BYOL: base momentum x predictor, 3 seeds
    python -m benchmarks.ssl_study compare    # MoCo v2, MoCo v3, BYOL at the same budget
    python -m benchmarks.ssl_study blur       # MoCo v2: BYOL's asymmetric vs its own blur

Each study trains through the one harness (every seed and swept value of a run in one
vmapped, compiled call; a static choice such as "with or without the predictor" is one
run per value), evaluates linear-probe and k-NN accuracy on held-out images,
adds the raw-pixel baseline and the random-encoder baseline (every run's own evaluation
at iteration 0), and writes a Markdown table, a JSON file and a figure:

    docs/results/byol_ablation.{md,json}   docs/figures/byol_ablation.png
    docs/results/ssl_compare.{md,json}     docs/figures/ssl_compare.png
    docs/results/moco_v2_blur.{md,json}

Every JSON file carries the provenance of the command that wrote it. Runs live under
`runs/` and resume from their checkpoints: an interrupted study (or one stopped by
`--stop-after-segments`) continues where it stopped when the same command is run again
(the command exits with status 3 until then), and writes its report once every run has
finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from benchmarks import cli, provenance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")  # where reports go (--docs)
MOMENTA = (0.0, 0.9, 0.99, 0.996)
# blur probability of (view 1, view 2): BYOL's asymmetric recipe, MoCo v2's symmetric one
BLURS = {"asymmetric": (1.0, 0.1), "symmetric": (0.5, 0.5)}
# A run counts as collapsed when the per-dimension std of its l2-normalised online
# projections (the SimSiam / lightly signal; 1/sqrt(64) = 0.125 for isotropic
# 64-d outputs) ends below this.
COLLAPSE_STD = 0.01


class Run(NamedTuple):
    """One harness call of a study: an algorithm's config, what it sweeps, where it writes.

    Attributes:
      name: the run's name (`--only` picks runs by it; its folder under the study's).
      label: how tables and figures name it.
      module: the algorithm module.
      config: the module's `Config`: a preset, or a `dataclasses.replace` of one.
      sweep: `{field: values}` vmapped in the one compiled program.
      out_dir: the run's folder.
    """

    name: str
    label: str
    module: ModuleType
    config: Any
    sweep: dict[str, list]
    out_dir: str


def _at_budget(config, args):
    """`config` at the study's length and batch size."""
    return dataclasses.replace(config, total_steps=args.total_steps, batch_size=args.batch_size)


def _iqm(values) -> float:
    """The IQM of the values that are not None (their mean when fewer than 4)."""
    from benchmarks.stats import iqm

    v = np.asarray([x for x in np.ravel(values) if x is not None], dtype=np.float64)
    return float(iqm(v)) if v.size else float("nan")


def _aggregate(seeds: int) -> str:
    """What `_iqm` of `seeds` values is, for tables and titles: "IQM", or "mean" below 4."""
    from benchmarks.stats import label

    return label(seeds)


def _train(run: Run, args, iterations: int) -> bool:
    from benchmarks import harness

    if _finished(run, iterations):
        return True
    segment = max(1, iterations // args.segments)
    print(f"[ssl_study] {run.name}: {run.label} -> {run.out_dir}", file=sys.stderr)
    res = harness.run(
        run.module,
        run.config,
        iterations=iterations,
        seeds=args.seeds,
        seed=args.seed,
        sweep=run.sweep,
        segment_length=segment,
        out_dir=run.out_dir,
        checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
        on_nonfinite="continue",
        progress=not args.no_progress,
        curve_metric="linear_probe",
        stop_after_segments=args.stop_after_segments,
    )
    # results.json times this call only; a study resumed in chunks sums them
    with open(os.path.join(run.out_dir, "timings.jsonl"), "a") as f:
        keys = ("iterations_this_call", "run_seconds", "compile_seconds", "eval_seconds")
        f.write(json.dumps({k: res.results[k] for k in keys}) + "\n")
    return res.status == "completed" and res.results["iterations"] == iterations


def _finished(run: Run, iterations: int) -> bool:
    path = os.path.join(run.out_dir, "results.json")
    if not os.path.exists(path):
        return False
    with open(path) as f:
        results = json.load(f)
    return results["status"] == "completed" and results["iterations"] == iterations


def _curves(out_dir: str, metric: str, kind: str, points: int, seeds: int):
    """`(samples [T], values [T, points, seeds])` of a finished run's log."""
    from benchmarks import harness

    x, y = harness.curve(harness.read_log(out_dir), metric, "samples", kind=kind)
    return x, y.reshape(len(x), points, seeds)


def _summarise(run: Run, seeds: int) -> list[dict]:
    """One row per sweep point: final metrics (`_iqm` over seeds, and per seed)."""
    with open(os.path.join(run.out_dir, "results.json")) as f:
        results = json.load(f)
    from benchmarks import harness

    records = harness.read_log(run.out_dir)
    with open(os.path.join(run.out_dir, "timings.jsonl")) as f:
        calls = [json.loads(line) for line in f if line.strip()]
    run_seconds = sum(c["run_seconds"] for c in calls)
    compile_seconds = sum(c["compile_seconds"] for c in calls)
    initial = records[0]["eval"]
    points = harness.sweep_grid(run.sweep)
    rows = []
    for p, point in enumerate(points):
        final = {k: v[p] for k, v in results["final"].items()}
        train = {k: v[p] for k, v in results["final_train"].items()}
        sl = slice(p * seeds, (p + 1) * seeds)
        row = {
            "program": run.name,
            "label": run.label,
            **point,
            "linear_probe": _iqm(final["linear_probe"]),
            "linear_probe_seeds": final["linear_probe"],
            "knn": _iqm(final["knn"]),
            "knn_seeds": final["knn"],
            "random_encoder_linear_probe": _iqm(initial["linear_probe"][sl]),
            "random_encoder_knn": _iqm(initial["knn"][sl]),
            "feature_std": _iqm(final["feature_std"]),
            "loss": _iqm(train["loss"]),
            "lag": _iqm(train["lag"]),
            "projection_std": _iqm(train["projection_std"]),
            "projection_std_seeds": train["projection_std"],
            "embedding_std": _iqm(train["embedding_std"]),
            "collapsed_seeds": int(
                sum(1 for v in train["projection_std"] if v is not None and v < COLLAPSE_STD)
            ),
            "diverged_seeds": int(sum(1 for d in results["diverged_at_iteration"][p] if d >= 0)),
            "samples": results["samples"],
            "run_seconds": run_seconds,
            "compile_seconds": compile_seconds,
            "samples_per_second": results["samples"] * len(points) * seeds / run_seconds,
        }
        rows.append(row)
    return rows


def _baselines(spec, probe_train: int) -> dict[str, float]:
    from representation import evaluation

    return evaluation.pixel_baselines(spec, probe_train=probe_train)


def _fmt(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def _seeds(values) -> str:
    return ", ".join(_fmt(v) for v in values)


# --------------------------------------------------------------------------- ablation


def ablation_runs(args) -> list[Run]:
    """BYOL with and without its predictor, each sweeping the base momentum."""
    from representation import byol

    out = os.path.join(args.runs, "byol_ablation")
    return [
        Run(
            name=f"use_predictor={flag}",
            label="BYOL" if flag else "BYOL without predictor",
            module=byol,
            config=dataclasses.replace(_at_budget(byol.Config(), args), use_predictor=flag),
            sweep={"base_momentum": list(MOMENTA)},
            out_dir=os.path.join(out, f"use_predictor={flag}"),
        )
        for flag in (True, False)
    ]


def ablation_report(runs, args, pixels) -> str:
    rows = [r for p in runs for r in _summarise(p, args.seeds)]
    random_lp = _iqm([r["random_encoder_linear_probe"] for r in rows])
    random_knn = _iqm([r["random_encoder_knn"] for r in rows])
    cfg = runs[0].config
    lines = [
        f"BYOL target-momentum ablation: cluttered MNIST ({cfg.data.num_train} training "
        f"images, {cfg.data.num_test} test images from held-out digits), "
        f"{rows[0]['samples']} samples per run (batch {cfg.batch_size}), {args.seeds} seeds "
        f"({_aggregate(args.seeds)}; per-seed values in brackets). Accuracy in %.",
        "",
        "| predictor | base momentum | linear probe | k-NN | projection std | lag | "
        "collapsed seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {'yes' if r['program'].endswith('True') else 'no'} | {r['base_momentum']} | "
            f"{_fmt(r['linear_probe'])} ({_seeds(r['linear_probe_seeds'])}) | {_fmt(r['knn'])} | "
            f"{r['projection_std']:.3f} | {r['lag']:.3f} | {r['collapsed_seeds']}/{args.seeds} |"
        )
    lines += [
        f"| raw pixels | - | {_fmt(pixels['linear_probe'])} | {_fmt(pixels['knn'])} | - | - | - |",
        f"| random encoder | - | {_fmt(random_lp)} | {_fmt(random_knn)} | - | - | - |",
    ]
    best = max(rows, key=lambda r: r["linear_probe"])
    summary = {
        "rows": rows,
        "raw_pixels": pixels,
        "random_encoder": {"linear_probe": random_lp, "knn": random_knn},
        "best": {k: best[k] for k in ("program", "base_momentum", "linear_probe", "knn")},
        "collapse_std_threshold": COLLAPSE_STD,
        "seeds": args.seeds,
    }
    _write("byol_ablation", "\n".join(lines) + "\n", summary, args)
    _ablation_figure(runs, args)
    return "\n".join(lines)


def _ablation_figure(runs, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks import stats

    panels = [
        ("linear_probe", "eval", "linear-probe accuracy"),
        ("lag", "train", "lag ||online - target|| / ||online||"),
        ("projection_std", "train", "std of normalised projections"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (metric, kind, title) in zip(axes, panels, strict=True):
        for run in runs:
            style = "-" if run.name.endswith("True") else "--"
            x, y = _curves(run.out_dir, metric, kind, len(MOMENTA), args.seeds)
            for p, m in enumerate(MOMENTA):
                centre = stats.iqm(y[:, p, :], axis=-1)
                label = f"{m}" + ("" if style == "-" else " (no predictor)")
                ax.plot(x, centre, style, color=colours[p], label=label, lw=1.5)
        ax.set_xlabel("samples")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if metric == "lag":
            ax.set_yscale("log")
    axes[0].legend(fontsize=7, title="base momentum", title_fontsize=7)
    fig.suptitle(
        f"BYOL on cluttered MNIST: base target momentum, with (solid) and without (dashed) "
        f"the predictor; {_aggregate(args.seeds)} over {args.seeds} seeds",
        fontsize=10,
    )
    fig.tight_layout()
    path = os.path.join(args.docs, "figures", "byol_ablation.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- compare


def compare_runs(args) -> list[Run]:
    """BYOL, MoCo v2 and MoCo v3 at the same budget."""
    from representation import byol, moco

    out = os.path.join(args.runs, "ssl_compare")
    return [
        Run(
            name="byol",
            label="BYOL",
            module=byol,
            config=_at_budget(byol.Config(), args),
            sweep={"base_momentum": [0.99]},
            out_dir=os.path.join(out, "byol"),
        ),
        Run(
            name="moco_v2",
            label="MoCo v2",
            module=moco,
            config=_at_budget(moco.PRESETS["v2"], args),
            sweep={"momentum": [0.99, 0.999]},
            out_dir=os.path.join(out, "moco_v2"),
        ),
        Run(
            name="moco_v3",
            label="MoCo v3",
            module=moco,
            config=_at_budget(moco.PRESETS["v3"], args),
            sweep={"temperature": [0.2]},
            out_dir=os.path.join(out, "moco_v3"),
        ),
    ]


def compare_report(runs, args, pixels) -> str:
    rows = [r for p in runs for r in _summarise(p, args.seeds)]
    random_lp = _iqm([r["random_encoder_linear_probe"] for r in rows])
    random_knn = _iqm([r["random_encoder_knn"] for r in rows])
    lines = [
        f"MoCo v2 vs MoCo v3 vs BYOL on cluttered MNIST at the same budget: "
        f"{rows[0]['samples']} samples per run (batch {args.batch_size}), {args.seeds} seeds "
        f"({_aggregate(args.seeds)}; per-seed values in brackets). Accuracy in %; seconds for "
        "all seeds and sweep points of a program together, compile apart.",
        "",
        "| method | setting | linear probe | k-NN | projection std | lag | run s | compile s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        setting = ", ".join(f"{k}={r[k]}" for k in runs[0].sweep if k in r) or ", ".join(
            f"{k}={r[k]}" for k in ("momentum", "temperature", "base_momentum") if k in r
        )
        lines.append(
            f"| {r['label']} | {setting} | {_fmt(r['linear_probe'])} "
            f"({_seeds(r['linear_probe_seeds'])}) | {_fmt(r['knn'])} | "
            f"{r['projection_std']:.3f} | {r['lag']:.3f} | {r['run_seconds']:.0f} | "
            f"{r['compile_seconds']:.0f} |"
        )
    lines += [
        f"| raw pixels | - | {_fmt(pixels['linear_probe'])} | {_fmt(pixels['knn'])} "
        "| - | - | - | - |",
        f"| random encoder | - | {_fmt(random_lp)} | {_fmt(random_knn)} | - | - | - | - |",
    ]
    summary = {
        "rows": rows,
        "raw_pixels": pixels,
        "random_encoder": {"linear_probe": random_lp, "knn": random_knn},
        "seeds": args.seeds,
    }
    _write("ssl_compare", "\n".join(lines) + "\n", summary, args)
    _compare_figure(runs, args)
    return "\n".join(lines)


def _compare_figure(runs, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from benchmarks import harness, stats

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for run in runs:
        points = harness.sweep_grid(run.sweep)
        for ax, metric in zip(axes, ("linear_probe", "knn"), strict=True):
            x, y = _curves(run.out_dir, metric, "eval", len(points), args.seeds)
            for p, point in enumerate(points):
                label = run.label + " (" + ", ".join(f"{k}={v}" for k, v in point.items()) + ")"
                ax.plot(x, stats.iqm(y[:, p, :], axis=-1), label=label, lw=1.5)
    for ax, title in zip(axes, ("linear-probe accuracy", "k-NN accuracy"), strict=True):
        ax.set_xlabel("samples")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(
        f"MoCo v2, MoCo v3 and BYOL on cluttered MNIST; {_aggregate(args.seeds)} over "
        f"{args.seeds} seeds"
    )
    fig.tight_layout()
    path = os.path.join(args.docs, "figures", "ssl_compare.png")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------- blur


def blur_runs(args) -> list[Run]:
    """MoCo v2 (its preset at the study's budget) with each blur of `BLURS`."""
    from representation import moco

    out = os.path.join(args.runs, "moco_v2_blur")
    base = _at_budget(moco.PRESETS["v2"], args)
    return [
        Run(
            name=f"blur={name}",
            label=f"MoCo v2, blur p = {probs[0]} / {probs[1]} ({name})",
            module=moco,
            config=dataclasses.replace(
                base, augment=dataclasses.replace(base.augment, blur_prob=probs)
            ),
            sweep={},
            out_dir=os.path.join(out, f"blur={name}"),
        )
        for name, probs in BLURS.items()
    ]


def blur_report(runs, args, pixels) -> str:
    """The blur study's table; its JSON also holds the command and its provenance."""
    rows = [r for p in runs for r in _summarise(p, args.seeds)]
    lines = [
        f"MoCo v2 on cluttered MNIST: the Gaussian blur's probability on (view 1, view 2), "
        f"BYOL's asymmetric 1.0 / 0.1 against MoCo v2's symmetric 0.5 / 0.5; "
        f"{rows[0]['samples']} samples per run (batch {args.batch_size}), {args.seeds} seeds "
        f"({_aggregate(args.seeds)}; per-seed values in brackets). Accuracy in %.",
        "",
        "| blur | linear probe | k-NN | projection std | lag | run s |",
        "|---|---|---|---|---|---|",
    ]
    for run, r in zip(runs, rows, strict=True):
        probs = r["blur_prob"] = run.config.augment.blur_prob
        lines.append(
            f"| {probs[0]} / {probs[1]} | {_fmt(r['linear_probe'])} "
            f"({_seeds(r['linear_probe_seeds'])}) | {_fmt(r['knn'])} "
            f"({_seeds(r['knn_seeds'])}) | {r['projection_std']:.3f} | {r['lag']:.3f} | "
            f"{r['run_seconds']:.0f} |"
        )
    lines.append(
        f"| raw pixels | {_fmt(pixels['linear_probe'])} | {_fmt(pixels['knn'])} | - | - | - |"
    )
    summary = {
        "rows": rows,
        "raw_pixels": pixels,
        "seeds": args.seeds,
    }
    _write("moco_v2_blur", "\n".join(lines) + "\n", summary, args)
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _write(name: str, markdown: str, summary: dict, args: argparse.Namespace) -> None:
    """Writes `<docs>/results/<name>.md` and `.json`, the JSON with the command's provenance."""
    from benchmarks.harness import jsonable

    summary = {**summary, "provenance": provenance.provenance(args.started)}
    folder = os.path.join(args.docs, "results")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.md"), "w") as f:
        f.write(markdown)
    with open(os.path.join(folder, f"{name}.json"), "w") as f:
        json.dump(jsonable(summary), f, indent=1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The study's command line; `total_steps` defaults to 1500 iterations of the batch."""
    p = cli.Parser(prog="python -m benchmarks.ssl_study", description=__doc__)
    p.add_argument("study", choices=STUDIES)
    p.add_argument("--seeds", type=cli.positive_int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--total-steps",
        type=cli.positive_int,
        default=None,
        help="samples per run (default: 1500 iterations of --batch-size)",
    )
    p.add_argument("--batch-size", type=cli.positive_int, default=256)
    p.add_argument("--segments", type=cli.positive_int, default=20, help="logged segments per run")
    p.add_argument(
        "--eval-every", type=cli.positive_int, default=4, help="segments between evaluations"
    )
    p.add_argument("--checkpoint-every", type=cli.positive_int, default=4)
    p.add_argument(
        "--stop-after-segments",
        type=cli.positive_int,
        default=None,
        help="return after this many segments of each run (resume later)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="train only this run (repeatable; e.g. use_predictor=True); report when all done",
    )
    p.add_argument("--runs", default=os.path.join("runs"), help="folder of the runs")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--docs", default=DOCS, help="folder of results/ and figures/ (the README's)")
    cli.add_layout_flag(p)
    args = p.parse_args(argv)
    cli.configure_layout(args)
    if args.total_steps is None:
        args.total_steps = args.batch_size * 1500
    args.started = provenance.now()
    return args


STUDIES = {
    "ablation": (ablation_runs, ablation_report),
    "compare": (compare_runs, compare_report),
    "blur": (blur_runs, blur_report),
}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    iterations = max(1, args.total_steps // args.batch_size)
    build, report_of = STUDIES[args.study]
    runs = build(args)
    names = [run.name for run in runs]
    unknown = sorted(set(args.only) - set(names))
    if unknown:
        cli.fail("python -m benchmarks.ssl_study", f"--only {unknown}: the runs are {names}")
    done = [
        _train(run, args, iterations)
        if not args.only or run.name in args.only
        else _finished(run, iterations)
        for run in runs
    ]
    if not all(done):
        print("[ssl_study] not finished: run the same command again to continue", file=sys.stderr)
        return 3
    pixels = _baselines(runs[0].config.data, runs[0].config.probe_train)
    report = report_of(runs, args, pixels)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
