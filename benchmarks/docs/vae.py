"""Renderers of the VAE page: basic, annealed and aggressive training, per machine and seed."""

from __future__ import annotations

from benchmarks import stats
from benchmarks.docs.engine import (
    ci,
    machine,
    num,
    renders,
    seed_mean,
    span,
    table,
)

# ------------------------------------------------------------------------------ the VAE

VAE_CHANGES = {
    "aggressive": "the authors' settings: SGD lr 1, clip 5, batch 16, inner window 15, at most 100 "
    "steps, text switch-off on the per-batch (B = 16) MI",
    "aggressive-inner30": "inner window 5, at most 30 steps",
    "aggressive-adam": "Adam 1e-3 (the authors' image setting)",
    "basic-adam": "Adam 1e-3, no inner loop",
    "aggressive-mi-full": "switch-off MI estimated once over the 10k validation sequences",
    "aggressive-patience5": "the image rule: off after 5 checks without a new best MI",
}


def _nll(seeds: list[dict]) -> str:
    values = [s["nll"] for s in seeds]
    return "not measured (time limit)" if None in values else ci(stats.summary(values), 2)


def _vae_outcome(seeds: list[dict]) -> str:
    count = {k: sum(s["status"] == k for s in seeds) for k in ("collapsed", "escaped", "partial")}
    return f"{count['collapsed']} / {count['escaped']}" + (
        f" ({count['partial']} partial)" if count["partial"] else ""
    )


def _vae_summary(variants: tuple[str, ...]):
    def render(data: dict) -> str:
        summary = {row["variant"]: row for row in data["summary"]}
        rows = []
        for name in variants:
            seeds, row = data["per_seed"][name], summary[name]
            seconds = "-" if row["run_seconds"] is None else num(row["run_seconds"], 0)
            rows.append(
                [
                    name,
                    _vae_outcome(seeds),
                    _nll(seeds),
                    *(f"{seed_mean([s[k] for s in seeds])[0]:.2f}" for k in ("kl", "mi", "au")),
                    seconds,
                ]
            )
        n, iterations = len(data["per_seed"][variants[0]]), summary[variants[0]]["iterations"]
        head = [
            "model",
            "collapsed / escaped",
            "NLL, IQM [95% CI]",
            f"KL ({stats.label(n)})",
            "MI",
            "AU",
            "train s",
        ]
        where = f"{machine(data['provenance'])}, {n} seeds, at iteration {iterations}:"
        return where + "\n\n" + table(head, rows)

    return render


renders("vae.h100", "vae_synthetic_h100.json")(_vae_summary(("basic", "anneal", "aggressive")))
renders("vae.cpu2500", "vae_synthetic_cpu2500.json")(_vae_summary(("basic", "aggressive")))
renders("vae.cpu250", "vae_synthetic_cpu.json")(_vae_summary(("basic", "aggressive")))
renders("vae.mnist", "vae_mnist_h100.json")(_vae_summary(("basic", "anneal", "aggressive")))


@renders("readme.vae", "vae_synthetic_cpu2500.json")
def readme_vae(data: dict) -> str:
    rows = [
        [name, _vae_outcome(s), _nll(s), f"{seed_mean([x['mi'] for x in s])[0]:.2f}"]
        for name, s in ((n, data["per_seed"][n]) for n in ("basic", "aggressive"))
    ]
    return table(["training", "collapsed / escaped", "test NLL, IQM [95% CI]", "MI (IQM)"], rows)


def _cell(s: dict) -> str:
    nll = "-" if s["nll"] is None else f"{s['nll']:.2f}"
    return f"{s['status'][0].upper()} {nll} / {s['kl']:.2f} / {s['mi']:.2f} / {s['au']:.0f}"


def _vae_seeds(data: dict) -> str:
    names = [n for n in ("basic", "anneal", "aggressive") if n in data["per_seed"]]
    columns = [data["per_seed"][n] for n in names]
    rows = [[seed["seed"], *(_cell(c[i]) for c in columns)] for i, seed in enumerate(columns[0])]
    return table(["seed", *names], rows)


for _name, _file in (
    ("h100", "vae_synthetic_h100"),
    ("cpu250", "vae_synthetic_cpu"),
    ("mnist", "vae_mnist_h100"),
):
    renders(f"vae.seeds-{_name}", f"{_file}.json")(_vae_seeds)


@renders("vae.seeds-cpu2500", "vae_synthetic_cpu2500.json")
def vae_seeds_cpu2500(data: dict) -> str:
    basic, agg = data["per_seed"]["basic"], data["per_seed"]["aggressive"]
    rows = [
        [b["seed"], _cell(b), _cell(a), a["switch_off_epoch"], f"{a['nll'] - b['nll']:+.2f}"]
        for b, a in zip(basic, agg, strict=True)
    ]
    return table(
        ["seed", "basic", "aggressive", "aggressive off at check", "NLL, aggressive - basic"], rows
    )


def _paired(data: dict) -> str:
    basic, agg = data["per_seed"]["basic"], data["per_seed"]["aggressive"]
    diff = [a["nll"] - b["nll"] for b, a in zip(basic, agg, strict=True)]
    s = stats.summary(diff)
    lower = sum(d < 0 for d in diff)
    return (
        f"aggressive minus basic, seed for seed: {s['statistic']} {s['value']:+.2f} nats "
        f"[{s['low']:+.2f}, {s['high']:+.2f}], aggressive lower in {lower} of {len(diff)} seeds"
    )


renders("vae.paired-2500", "vae_synthetic_cpu2500.json")(_paired)
renders("vae.paired-250", "vae_synthetic_cpu.json")(_paired)


@renders("vae.variants", "vae_synthetic_h100.json")
def vae_variants(data: dict) -> str:
    summary = {row["variant"]: row for row in data["summary"]}
    rows = []
    for name, change in VAE_CHANGES.items():
        seeds, row = data["per_seed"][name], summary[name]
        reached = f"{row['iterations']}" + ("" if row["finished"] else " (cut off)")
        rows.append(
            [
                name,
                change,
                _vae_outcome(seeds),
                *(f"{seed_mean([s[k] for s in seeds])[0]:.2f}" for k in ("kl", "mi")),
                _nll(seeds),
                reached,
            ]
        )
    head = [
        "variant",
        "what changes",
        "collapsed / escaped",
        "KL (IQM)",
        "MI (IQM)",
        "NLL, IQM [95% CI]",
        "iterations reached",
    ]
    return table(head, rows)


@renders("vae.mi-collapsed", "vae_synthetic_h100.json")
def vae_mi_collapsed(data: dict) -> str:
    mi = [
        s["mi"] for seeds in data["per_seed"].values() for s in seeds if s["status"] == "collapsed"
    ]
    return f"{min(mi):+.2f} to {max(mi):+.2f}"


@renders("vae.h100-compile", "vae_synthetic_h100.json")
def vae_h100_compile(data: dict) -> str:
    seconds = [r["compile_seconds"] for r in data["summary"] if r["compile_seconds"] is not None]
    cut = [r["variant"] for r in data["summary"] if not r["finished"]]
    return (
        f"compile times ({span(seconds, 0)} s) are inflated by that sharing, and {len(cut)} of "
        f"the jobs ({', '.join(cut)}) were cut off by the limit"
    )


@renders("vae.mnist-notes", "vae_mnist_h100.json")
def vae_mnist_notes(data: dict) -> str:
    agg, basic = data["per_seed"]["aggressive"], data["per_seed"]["basic"]
    off = [s["switch_off_epoch"] for s in agg]
    diff = stats.summary([a["nll"] - b["nll"] for b, a in zip(basic, agg, strict=True)])
    return (
        f"The aggressive phase ended at epochs {span(off, 0)}. Aggressive minus basic NLL, seed "
        f"for seed: {diff['statistic']} {diff['value']:+.2f} nats "
        f"[{diff['low']:+.2f}, {diff['high']:+.2f}]."
    )


@renders("vae.off-checks", "vae_synthetic_cpu2500.json")
def vae_off_checks(data: dict) -> str:
    checks = [s["switch_off_epoch"] for s in data["per_seed"]["aggressive"]]
    return f"checks {span(checks, 0)}"
