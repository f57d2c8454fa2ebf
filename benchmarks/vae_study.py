"""Basic vs KL annealing vs aggressive VAE training, per seed: collapse or escape.

    python -m benchmarks.vae_study run --data synthetic --variants basic,anneal,aggressive \\
        --seeds 8 --epochs 10
    python -m benchmarks.vae_study report --data synthetic

`run` trains every (variant, seed) job through the harness into
`OUT/<data>/<variant>/seed<k>/` (one seed per program: on CPU the aggressive inner loop is
cheaper run seed by seed than vmapped, where every seed waits for the slowest; see
`--vmap`), then measures the test NLL by importance sampling (`--iw-samples`, 500 as the
paper) on the final params and writes `final.json` beside the harness's `results.json`.
Jobs already done are skipped; an interrupted job resumes from its checkpoint, so the
command can run in chunks (`timeout 1200 ...`, repeated). `--budget-minutes` stops
starting new jobs once that much time has passed.

`report` collects the jobs into `docs/results/vae_<data>.md` and `.json`: one row per seed
(collapsed: AU = 0 and KL < 0.05; escaped: AU >= 1 and MI > 0.1) and a summary per variant
(mean and standard deviation over seeds of NLL, KL, MI, AU and wall time), beside the
paper's numbers for its own data sets. `final.json` and the report's JSON carry the
provenance of the command that wrote them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import stabilizers
from benchmarks import cli, harness, provenance
from generative import vae

PROG = "python -m benchmarks.vae_study"

DATA = ("mnist", "synthetic")


def variants(data: str) -> dict[str, vae.Config]:
    """The study's configs for `data`, by variant name in report order (the NLL is measured
    after training, so `iw_samples` is 0 during it). The first three are the study; the
    others probe what makes the aggressive escape reliable."""
    if data == "mnist":
        base = dataclasses.replace(vae.PRESETS["mnist"], iw_samples=0)
        return {
            "basic": base,
            "anneal": dataclasses.replace(base, kl_start=0.1),
            "aggressive": dataclasses.replace(base, aggressive=True),
        }
    if data != "synthetic":
        cli.fail(PROG, f"--data must be one of {DATA}; got {data!r}")
    base = vae.Config(iw_samples=0)
    aggressive = dataclasses.replace(base, aggressive=True)
    return {
        "basic": base,
        # KL weight 0.1 -> 1 over the first half of the 10-epoch budget
        "anneal": dataclasses.replace(base, kl_start=0.1, warm_up_epochs=5.0),
        "aggressive": aggressive,
        # the switch-off rule's MI estimate: one estimate over the 10k validation
        # sequences instead of the mean of per-batch (B = 16) estimates
        "aggressive-mi-full": dataclasses.replace(aggressive, switch_mi_batch=0),
        # the switch-off rule: the image rule (5 epochs without a new best MI)
        "aggressive-patience5": dataclasses.replace(
            aggressive, switch_patience=5, switch_compare="best", switch_initial=-math.inf
        ),
        # the optimizer: Adam 1e-3 (the authors' image setting) instead of SGD 1.0
        "aggressive-adam": dataclasses.replace(aggressive, optimizer="adam", learning_rate=1e-3),
        "basic-adam": dataclasses.replace(base, optimizer="adam", learning_rate=1e-3),
        # the inner loop: a short bound and window
        "aggressive-inner30": dataclasses.replace(aggressive, inner_max_steps=30, inner_window=5),
    }


PAPER = {
    # He et al. (2019), Tables 1-2, as quoted in the repository notes; KL, MI in nats,
    # NLL in nats per sentence (text) or per image (OMNIGLOT).
    "Yahoo": {
        "VAE + anneal": {"nll": 328.6, "kl": 0.0, "mi": 0.0, "au": 0},
        "SA-VAE + anneal": {"nll": 327.2, "kl": 5.2, "mi": 2.7, "au": 9},
        "Ours + anneal (aggressive)": {"nll": 326.7, "kl": 5.7, "mi": 2.9, "au": 15},
        "LSTM-LM": {"nll": 328.0},
    },
    "Yelp": {
        "LSTM-LM": {"nll": 358.1},
        "Ours (aggressive)": {"nll": 355.9, "kl": 3.8, "mi": 2.4, "au": 11},
    },
    "OMNIGLOT": {
        "PixelCNN": {"nll": 89.73},
        "Ours (aggressive)": {"nll": 89.1, "kl": 2.4, "au": 6},
    },
}


def parse_overrides(items: list[str]) -> dict:
    """`["field=value", ...]` -> {field: value}, the value read as JSON when it parses
    (numbers, true / false) and as a string otherwise; unknown fields fail loudly."""
    fields = {f.name for f in dataclasses.fields(vae.Config)}
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in fields:
            cli.fail(PROG, f"--set {item}: expected field=value with a field of vae.Config")
        try:
            out[name] = json.loads(text)
        except json.JSONDecodeError:
            out[name] = text
    return out


def job_config(data: str, variant: str, overrides: dict | None = None) -> vae.Config:
    """The config of one job: the variant's, with `overrides` (fields) replaced."""
    configs = variants(data)
    if variant not in configs:
        cli.fail(PROG, f"--variants: no {variant!r} for {data}; choose from {sorted(configs)}")
    return dataclasses.replace(configs[variant], **(overrides or {}))


def check_job(data: str, variant: str, overrides: dict) -> None:
    """A usage error unless the job's config is one `vae.init` accepts (traced only)."""
    try:
        harness.check(vae, job_config(data, variant, overrides), iterations=1)
    except ValueError as e:
        cli.fail(PROG, f"--variants {variant} (with --set): {' '.join(str(e).split())}")


def write_json(path: str, payload: dict) -> None:
    """Writes `payload` with the provenance of this command as JSON."""
    with open(path, "w") as f:
        json.dump({**payload, "provenance": provenance.provenance()}, f, indent=1)


def status(final: dict, s: int) -> str:
    """ "collapsed" (AU 0 and KL < 0.05), "escaped" (AU >= 1 and MI > 0.1) or "partial"."""
    au, kl, mi = final["au"][s], final["kl"][s], final["mi"][s]
    if au == 0 and kl < 0.05:
        return "collapsed"
    if au >= 1 and mi > 0.1:
        return "escaped"
    return "partial"


def _training_timing(out: str, res: dict, iterations: int) -> dict:
    """The training time of a job, kept in `out/timing.json` by the call that trained it
    from start to end (a resumed job: that call's time only, marked `resumed`)."""
    timing_path = os.path.join(out, "timing.json")
    if res["iterations_this_call"] == iterations:  # trained start to end in this call
        timing = {k: res[k] for k in ("run_seconds", "compile_seconds", "eval_seconds")}
        timing["resumed"] = False
        with open(timing_path, "w") as f:
            json.dump(timing, f)
        return timing
    if os.path.exists(timing_path):  # trained before; only the NLL was left
        with open(timing_path) as f:
            return json.load(f)
    timing = {k: res[k] for k in ("run_seconds", "compile_seconds", "eval_seconds")}
    timing["resumed"] = True
    return timing


def run_job(data, variant, seeds, out, epochs, iw_samples, segments_per_epoch, progress, overrides):
    cfg = job_config(data, variant, overrides)
    per_epoch = vae.epoch_iterations(cfg)
    iterations = epochs * per_epoch
    seg = max(1, per_epoch // segments_per_epoch)
    t0 = time.perf_counter()
    result = harness.run(
        vae,
        cfg,
        iterations=iterations,
        seeds=len(seeds),
        seed=seeds[0],
        segment_length=seg,
        out_dir=out,
        checkpoint_every=1,
        eval_every=1,
        progress=progress,
        curve_metric="kl",
    )
    if result.status != "completed":
        print(f"[vae_study] {out}: {result.status}", file=sys.stderr)
        return
    timing = _training_timing(out, result.results, iterations)
    nll_cfg = dataclasses.replace(cfg, iw_samples=iw_samples)
    axes = stabilizers.seed_axes(result.states)
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 0xE7A1) for s in seeds])
    t1 = time.perf_counter()
    ev = jax.jit(jax.vmap(vae.evaluate, in_axes=(axes, None, 0)))(result.states, nll_cfg, keys)
    ev = {k: np.asarray(v).tolist() for k, v in jax.device_get(ev).items()}
    nll_seconds = time.perf_counter() - t1
    states = result.states
    final = {
        **ev,
        "seeds": list(seeds),
        "iterations": iterations,
        "epochs": epochs,
        "iw_samples": iw_samples,
        "eval_examples": cfg.eval_examples,
        # the check at which the aggressive phase ended (None: still on at the end)
        "switch_off_epoch": [
            None if bool(a) or not cfg.aggressive else int(c)
            for a, c in zip(
                np.asarray(states.switch.active), np.asarray(states.switch.checks), strict=True
            )
        ],
        "resumed": timing["resumed"],
        "compile_seconds": timing["compile_seconds"],
        "run_seconds": timing["run_seconds"],
        "train_seconds_per_seed": (timing["run_seconds"] + timing["compile_seconds"]) / len(seeds),
        "nll_seconds": nll_seconds,
        "job_seconds": time.perf_counter() - t0,
        "vmapped_seeds": len(seeds),
        "overrides": overrides,
        "device": jax.devices()[0].device_kind,
    }
    write_json(os.path.join(out, "final.json"), final)
    print(
        f"[vae_study] {data}/{variant} seeds {seeds}: nll={np.round(ev['nll'], 2).tolist()} "
        f"kl={np.round(ev['kl'], 3).tolist()} mi={np.round(ev['mi'], 3).tolist()} "
        f"au={ev['au']} train {final['train_seconds_per_seed']:.0f}s/seed",
        file=sys.stderr,
        flush=True,
    )


def _job_minutes(variant_dir: str) -> float:
    """Mean wall time of the finished jobs of a variant (0 when none)."""
    times = []
    for job in os.listdir(variant_dir) if os.path.isdir(variant_dir) else []:
        path = os.path.join(variant_dir, job, "final.json")
        if os.path.exists(path):
            with open(path) as f:
                times.append(json.load(f)["job_seconds"] / 60)
    return float(np.mean(times)) if times else 0.0


def cmd_run(args) -> int:
    start = time.perf_counter()
    variants = args.variants.split(",")
    overrides = {"unroll": args.scan_unroll, **parse_overrides(args.set)}
    for v in variants:
        check_job(args.data, v, overrides)  # fail early on a typo
    for variant in variants:
        groups = (
            [list(range(args.seed, args.seed + args.seeds))]
            if args.vmap
            else [[s] for s in range(args.seed, args.seed + args.seeds)]
        )
        for seeds in groups:
            name = f"seeds{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed{seeds[0]}"
            out = os.path.join(args.out, args.data, variant, name)
            if os.path.exists(os.path.join(out, "final.json")):
                continue
            elapsed = (time.perf_counter() - start) / 60
            guess = _job_minutes(os.path.join(args.out, args.data, variant)) or args.job_minutes
            if elapsed + guess > args.budget_minutes:
                print(
                    f"[vae_study] {elapsed:.1f} of {args.budget_minutes} minutes spent and the "
                    f"next job takes about {guess:.1f}: run again to continue",
                    file=sys.stderr,
                )
                return 0
            run_job(
                args.data,
                variant,
                seeds,
                out,
                args.epochs,
                args.iw_samples,
                args.segments_per_epoch,
                not args.no_progress,
                overrides,
            )
    return 0


def _seeds_of(job: str) -> list[int]:
    """Seeds from a job directory name: `seed3` or `seeds0-7`."""
    if job.startswith("seeds"):
        lo, hi = job[5:].split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(job[4:])]


def _unfinished_job(path: str, job: str) -> dict | None:
    """A job whose training or NLL pass did not finish (e.g. a time limit): its latest
    harness evaluation (KL, MI, AU; no NLL), the iteration reached, and where each seed's
    aggressive phase stood (from the logged training metrics)."""
    log = os.path.join(path, "log.jsonl")
    if not os.path.exists(log):
        return None
    with open(log) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    evals = [e for e in lines if "eval" in e]
    if not evals:
        return None
    last = evals[-1]
    seeds = _seeds_of(job)
    off_at: list = [None] * len(seeds)
    start = 0
    for e in lines:
        agg = e.get("train", {}).get("aggressive")
        if agg is not None:
            for i, a in enumerate(agg):
                if a < 1.0 and off_at[i] is None:  # off for some step of this segment
                    off_at[i] = f"in iterations {start}-{e['iteration']}"
        start = e["iteration"]
    timing = {}
    if os.path.exists(os.path.join(path, "timing.json")):
        with open(os.path.join(path, "timing.json")) as f:
            timing = json.load(f)
    final = {k: last["eval"][k] for k in ("elbo", "kl", "mi", "mi_batch", "au")}
    final.update(
        nll=[None] * len(seeds),
        seeds=seeds,
        iterations=last["iteration"],
        switch_off_epoch=off_at,
        run_seconds=timing.get("run_seconds"),
        compile_seconds=timing.get("compile_seconds"),
        device=None,
        finished=False,
    )
    return final


def collect(root: str, data: str) -> dict[str, list[dict]]:
    """{variant: [per-seed rows]} from every job under root/data (unfinished jobs: their
    latest evaluation, marked `finished: False`, without NLL)."""
    rows: dict[str, list[dict]] = {}
    base = os.path.join(root, data)
    for variant in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        for job in sorted(os.listdir(os.path.join(base, variant))):
            path = os.path.join(base, variant, job)
            if os.path.exists(os.path.join(path, "final.json")):
                with open(os.path.join(path, "final.json")) as f:
                    final = json.load(f)
                final["finished"] = True
            else:
                final = _unfinished_job(path, job)
                if final is None:
                    continue
            for i, s in enumerate(final["seeds"]):
                row = {k: final[k][i] for k in ("nll", "elbo", "kl", "mi", "mi_batch", "au")}
                row.update(
                    seed=s,
                    status=status(final, i),
                    switch_off_epoch=final["switch_off_epoch"][i],
                    iterations=final["iterations"],
                    finished=final["finished"],
                    # a job resumed from a checkpoint timed only its last call: no time
                    run_seconds=None if final.get("resumed") else final.get("run_seconds"),
                    compile_seconds=final.get("compile_seconds"),
                    seeds_per_program=len(final["seeds"]),
                    device=final.get("device"),
                )
                rows.setdefault(variant, []).append(row)
    for v in rows:
        rows[v].sort(key=lambda r: r["seed"])
    return rows


def _ms(values, fmt="{:.2f}"):
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not v.size:
        return "-"
    if v.size == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.format(v.std(ddof=1))}"


def _job_seconds(rs: list[dict], key: str) -> float | None:
    """Seconds per program, summed over the programs of a variant (one per seed, or one
    for all vmapped seeds)."""
    per_job = {}
    for r in rs:
        per_job[(r["seed"] // r["seeds_per_program"], r["seeds_per_program"])] = r[key]
    if any(v is None for v in per_job.values()):
        return None
    return float(sum(per_job.values()))


def summary(rows: dict[str, list[dict]], order: list[str]) -> list[dict]:
    out = []
    for v in order:
        if v not in rows:
            continue
        rs = rows[v]
        counts = {k: sum(r["status"] == k for r in rs) for k in ("collapsed", "escaped", "partial")}
        nll = [r["nll"] for r in rs if r["nll"] is not None]
        out.append(
            {
                "variant": v,
                "seeds": len(rs),
                **counts,
                "nll": _ms(nll),
                "kl": _ms([r["kl"] for r in rs]),
                "mi": _ms([r["mi"] for r in rs]),
                "au": _ms([r["au"] for r in rs], "{:.1f}"),
                "run_seconds": _job_seconds(rs, "run_seconds"),
                "compile_seconds": _job_seconds(rs, "compile_seconds"),
                "iterations": max(r["iterations"] for r in rs),
                "finished": all(r["finished"] for r in rs),
                "nll_mean": float(np.mean(nll)) if nll else None,
            }
        )
    return out


def _secs(x):
    return "-" if x is None else f"{x:.0f}"


def cmd_report(args) -> int:
    rows = collect(args.out, args.data)
    if not rows:
        raise SystemExit(f"no finished jobs under {os.path.join(args.out, args.data)}")
    order = [v for v in variants(args.data) if v in rows]
    summ = summary(rows, order)
    devices = sorted({r["device"] for rs in rows.values() for r in rs if r["device"]})
    label = args.label or ", ".join(devices)
    lines = [
        f"### {args.data} ({label}): test metrics at the end, mean ± std over seeds",
        "",
        "Test NLL (importance sampling), KL, MI, AU in nats / units per example. collapsed: "
        "AU 0 and KL < 0.05; escaped: AU >= 1 and MI > 0.1. Training seconds: all seeds of a "
        "variant (vmapped in one program), compile time apart.",
        "",
        "| variant | seeds | collapsed | escaped | partial | NLL | KL | MI | AU "
        "| train s | compile s | iterations |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summ:
        it = str(s["iterations"]) + ("" if s["finished"] else " (unfinished: no NLL)")
        lines.append(
            f"| {s['variant']} | {s['seeds']} | {s['collapsed']} | {s['escaped']} | {s['partial']} "
            f"| {s['nll']} | {s['kl']} | {s['mi']} | {s['au']} | {_secs(s['run_seconds'])} "
            f"| {_secs(s['compile_seconds'])} | {it} |"
        )
    lines += [
        "",
        f"### {args.data} ({label}): per seed",
        "",
        "| variant | seed | status | NLL | KL | MI | MI (B-batch) | AU | aggressive off at check |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in order:
        for r in rows[v]:
            off = r["switch_off_epoch"]
            off = (
                "-"
                if off is None and not v.startswith("aggressive")
                else ("still on" if off is None else str(off))
            )
            nll = "-" if r["nll"] is None else f"{r['nll']:.2f}"
            lines.append(
                f"| {v} | {r['seed']} | {r['status']} | {nll} | {r['kl']:.3f} "
                f"| {r['mi']:.3f} | {r['mi_batch']:.3f} | {r['au']:.0f} | {off} |"
            )
    lines += [
        "",
        "### The paper's numbers on its own data sets (for scale)",
        "",
        "He et al. (2019), Tables 1-2, as recorded in the project's research notes (recalled, "
        "not checked against the paper's text).",
        "",
        "| data set | model | NLL | KL | MI | AU |",
        "|---|---|---|---|---|---|",
    ]
    for ds, models in PAPER.items():
        for m, vals in models.items():
            cells = [str(vals.get(k, "-")) for k in ("nll", "kl", "mi", "au")]
            lines.append(f"| {ds} | {m} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    name = args.name or f"vae_{args.data}"
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, f"{name}.md"), "w") as f:
        f.write(text)
    write_json(
        os.path.join(args.results, f"{name}.json"),
        {"label": label, "summary": summ, "per_seed": rows},
    )
    print(text)
    return 0


def main(argv=None) -> int:
    p = cli.Parser(prog=PROG, description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the jobs (resumable)")
    r.add_argument("--data", default="synthetic", choices=DATA)
    r.add_argument("--variants", default="basic,anneal,aggressive")
    r.add_argument("--seeds", type=cli.positive_int, default=8)
    r.add_argument("--seed", type=int, default=0, help="first seed")
    r.add_argument("--epochs", type=cli.positive_int, default=10)
    r.add_argument("--iw-samples", type=cli.nonnegative_int, default=500)
    r.add_argument("--segments-per-epoch", type=cli.positive_int, default=2)
    r.add_argument("--vmap", action="store_true", help="all seeds of a variant in one program")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a vae.Config field for every job (repeatable), e.g. num_train=4000",
    )
    r.add_argument(
        "--scan-unroll",
        type=cli.positive_int,
        default=1,
        help="unroll of the LSTM scans (1 compiles fastest on CPU; 12 runs faster on a GPU)",
    )
    r.add_argument(
        "--budget-minutes",
        type=float,
        default=math.inf,
        help="start no job that would end after this (estimated from finished jobs)",
    )
    r.add_argument(
        "--job-minutes", type=float, default=0.0, help="the estimate before any job finished"
    )
    r.add_argument("--out", default="runs/vae_study")
    r.add_argument("--no-progress", action="store_true")
    cli.add_layout_flag(r)
    q = sub.add_parser("report", help="write the tables")
    q.add_argument("--data", default="synthetic", choices=DATA)
    q.add_argument("--out", default="runs/vae_study")
    q.add_argument("--results", default="docs/results")
    q.add_argument("--name", default="", help="file name of the tables (default vae_<data>)")
    q.add_argument("--label", default="", help="machine and budget named in the headings")
    args = p.parse_args(argv)
    cli.configure_layout(args)
    return cmd_run(args) if args.command == "run" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
