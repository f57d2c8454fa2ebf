"""Consistency Training studies: the EMA ablation, CT vs iCT, one vs two steps, images.

Each study is one command; all train through the harness (checkpointed: run the same
command again to resume) into `runs/consistency/<study>/`, then write figures to
`docs/figures/` and a results table to `docs/results/`:

    python -m benchmarks.consistency_study ablation   # CT, mu0 in {0, .9, .95, .99}, 5 seeds
    python -m benchmarks.consistency_study compare    # CT vs iCT, same budget, 3 seeds
    python -m benchmarks.consistency_study bar        # the best 2-D recipe, one seed, timed
    python -m benchmarks.consistency_study toys       # the same recipe on the other toys
    python -m benchmarks.consistency_study digits     # sklearn 8x8 digits
    python -m benchmarks.consistency_study mnist5k    # 5000 MNIST digits (resumable)
    python -m benchmarks.consistency_study dropout    # iCT, dropout 0 vs 0.3, 3 seeds

`--iterations N` overrides a study's length (the schedules span the new length, so a
run resumed with another length is refused by the harness). Every results file carries
the provenance of the command that wrote it.

2-D results give the energy distance twice: the V-statistic (`energy_*`, `ratio_*`) and the
unbiased U-statistic (`energy_u_*`). A "ratio" is V(samples, held-out) over the floor
V(held-out, held-out') of the same size n: the floor is V's finite-sample bias, about
2 E|X - X'| / n, so the ratio counts the distance in units of that bias and, for a fixed
model with distance D > 0, grows about as 1 + n D / (2 E|X - X'|). The U-statistic
estimates D itself, without bias at any n (about 0 between two held-out sets).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap
import time

import jax
import numpy as np

import stabilizers
from benchmarks import cli, harness, plots, provenance
from benchmarks.stats import iqm
from generative import consistency as ct

FIGURES = os.path.join("docs", "figures")
RESULTS = os.path.join("docs", "results")
RUNS = os.path.join("runs", "consistency")

STUDIES = ("ablation", "compare", "bar", "toys", "digits", "mnist5k", "dropout")
DEFAULT_ITERATIONS = {
    "ablation": 8000,
    "compare": 8000,
    "dropout": 8000,
    "bar": 16_000,
    "toys": 10_000,
    "digits": 8000,
    "mnist5k": 20_000,
}
DROPOUT_RATES = (0.0, 0.3)
RATIO_MEANING = (
    "ratio = V(samples, held-out) / V(held-out, held-out'), both V-statistics of n points "
    "a set. The floor is V's finite-sample bias, about 2 E|X - X'| / n, so the ratio counts "
    "the distance in units of that bias and grows with n for a fixed model (about "
    "1 + n D / (2 E|X - X'|) for a distance D > 0); energy_u_* are the unbiased "
    "U-statistics, estimates of D itself at any n (about 0 between two held-out sets)."
)


def configs(study: str, iterations: int) -> dict[str, ct.Config]:
    """The configs a study trains, by run name; the schedules span `iterations` steps.

    ablation and compare: CT (L2: LPIPS has no 2-D analogue) and iCT with a network small
    enough for 2 CPU cores; dropout: that iCT at each rate of `DROPOUT_RATES`; bar and
    toys: the "moons" preset on each 2-D toy; digits and mnist5k: their presets.
    """
    small = dict(width=64, depth=2, batch_size=128)
    if study in ("ablation", "compare"):
        runs = {f"{study}_ct": dataclasses.replace(ct.Config(), **small)}
        if study == "compare":
            runs["compare_ict"] = dataclasses.replace(ct.PRESETS["ict"], **small)
    elif study == "dropout":
        runs = {
            f"ict_dropout_{rate}": dataclasses.replace(ct.PRESETS["ict"], dropout=rate, **small)
            for rate in DROPOUT_RATES
        }
    elif study in ("bar", "toys"):
        toys = ("moons",) if study == "bar" else ("gaussians", "checkerboard", "swiss_roll")
        runs = {f"bar_{data}": dataclasses.replace(ct.PRESETS["moons"], data=data) for data in toys}
    elif study in ("digits", "mnist5k"):
        runs = {study: ct.PRESETS[study]}
    else:
        raise ValueError(f"study must be one of {STUDIES}; got {study!r}")
    return {
        name: dataclasses.replace(config, total_steps=iterations * config.batch_size)
        for name, config in runs.items()
    }


def _run(name, config, iterations, seeds=1, sweep=None, segments=40, eval_every=4, **kw):
    out = os.path.join(RUNS, name)
    print(
        f"[consistency_study] {name}: {iterations} iterations x {seeds} seeds -> {out}",
        file=sys.stderr,
    )
    res = harness.run(
        ct,
        config,
        iterations=iterations,
        seeds=seeds,
        sweep=sweep,
        segment_length=kw.pop("segment_length", max(1, iterations // segments)),
        out_dir=out,
        checkpoint_every=kw.pop("checkpoint_every", 4),
        eval_every=eval_every,
        curve_metric=kw.pop("curve_metric", None),
        **kw,
    )
    return res, harness.read_log(out)


def _write(name: str, payload: dict) -> None:
    """Writes `docs/results/<name>.json` with the provenance of this command."""
    payload = {**payload, "provenance": payload.get("provenance") or provenance.provenance()}
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(harness.jsonable(payload), f, indent=1)
    print(json.dumps(harness.jsonable(payload), indent=1))


def _timing(res) -> dict:
    r = res.results
    return {
        k: r[k]
        for k in ("compile_seconds", "run_seconds", "eval_seconds", "iterations", "samples")
        if k in r
    }


def _final(res, metric) -> np.ndarray:
    return np.asarray(res.results["final"][metric], dtype=np.float64)  # [P, S]


# --------------------------------------------------------------------------- 2-D studies


def ablation(iterations: int) -> None:
    """CT with mu0 in {0, 0.9, 0.95, 0.99}, 5 seeds, one vmapped program."""
    mus = [0.0, 0.9, 0.95, 0.99]
    config = configs("ablation", iterations)["ablation_ct"]
    res, log = _run("ablation", config, iterations, seeds=5, sweep={"mu0": mus})
    labels = [f"mu0={m}" for m in mus]
    os.makedirs(FIGURES, exist_ok=True)
    for metric, kind, ylabel in (
        ("ratio_1step", "eval", "one-step energy distance / floor (EMA params)"),
        ("energy_1step_online", "eval", "one-step energy distance (online params)"),
        ("lag", "train", "lag(online, target)"),
    ):
        x, y = harness.curve(log, metric, "samples", kind=kind)
        y = y.reshape(len(x), len(mus), 5)
        plots.learning_curve(
            os.path.join(FIGURES, f"ct_ablation_{metric}.png"),
            x,
            y,
            labels,
            xlabel="samples",
            ylabel=ylabel,
            title="CT on two moons: target EMA mu0, 5 seeds",
            logy=metric != "lag" or bool(np.nanmin(y[1:]) > 0),
        )
    table = {}
    ratio = _final(res, "ratio_1step")
    ratio2 = _final(res, "ratio_2step")
    energy_u1, energy_u2 = _final(res, "energy_u_1step"), _final(res, "energy_u_2step")
    online = _final(res, "energy_1step_online") / _final(res, "energy_floor")
    _, lag = harness.curve(log, "lag", "samples", kind="train")
    lag = lag.reshape(len(lag), len(mus), 5)
    x, r_curve = harness.curve(log, "ratio_1step", "samples")
    r_curve = r_curve.reshape(len(x), len(mus), 5)
    robust = _robust(res.states, config)  # grid points in sweep-major order: [P * S]
    for p, m in enumerate(mus):
        seeds_p = slice(5 * p, 5 * p + 5)
        table[f"mu0={m}"] = {
            "mean_of_10_draws": {
                k: v if k == "draws" else np.asarray(v)[seeds_p] for k, v in robust.items()
            },
            "ratio_1step_iqm": iqm(ratio[p]),
            "ratio_1step_seeds": ratio[p],
            "ratio_2step_iqm": iqm(ratio2[p]),
            "energy_u_1step_iqm": iqm(energy_u1[p]),
            "energy_u_2step_iqm": iqm(energy_u2[p]),
            "ratio_1step_online_iqm": iqm(online[p]),
            "final_lag_mean": float(np.mean(lag[-1, p])),
            # seed-to-seed spread over the second half of training (stability)
            "ratio_1step_late_std_over_time": float(
                np.mean(np.std(np.log(r_curve[len(x) // 2 :, p]), axis=0))
            ),
        }
    _write(
        "consistency_ablation",
        {
            "config": config,
            "seeds": 5,
            "ratio_meaning": RATIO_MEANING,
            "table": table,
            **_timing(res),
        },
    )


def compare(iterations: int) -> None:
    """CT (paper recipe, mu0 0.9) against iCT at the same budget and network, 3 seeds."""
    out = {}
    curves = {}
    for kind in ("ct", "ict"):
        config = configs("compare", iterations)[f"compare_{kind}"]
        res, log = _run(f"compare_{kind}", config, iterations, seeds=3)
        out[kind] = {
            "ratio_1step": _final(res, "ratio_1step")[0],
            "ratio_2step": _final(res, "ratio_2step")[0],
            "energy_u_1step": _final(res, "energy_u_1step")[0],
            "energy_u_2step": _final(res, "energy_u_2step")[0],
            "ratio_1step_online": (
                _final(res, "energy_1step_online") / _final(res, "energy_floor")
            )[0],
            **_timing(res),
            "mean_of_10_draws": _robust(res.states, config),
        }
        curves[kind] = harness.curve(log, "ratio_1step", "samples")
    x = curves["ct"][0]
    y = np.stack([curves["ct"][1], curves["ict"][1]], axis=1)
    plots.learning_curve(
        os.path.join(FIGURES, "ct_vs_ict.png"),
        x,
        y,
        ["CT (L2, mu0 0.9)", "iCT"],
        xlabel="samples",
        ylabel="one-step energy distance / floor",
        logy=True,
        title="CT vs iCT on two moons, 3 seeds, same network and budget",
    )
    _write("consistency_compare", {"ratio_meaning": RATIO_MEANING, **out})


def dropout(iterations: int, seeds: int = 3) -> dict:
    """iCT on two moons with dropout 0 and 0.3, `seeds` seeds each, otherwise compare's iCT.

    0.3 is Song & Dhariwal's (2023) rate for CIFAR-10, one mask shared by the two branches.
    Writes `docs/results/ict_dropout.json`: per rate, the final V- and U-statistics per seed
    and their means over 10 draws of 2000 points.
    """
    started = provenance.now()
    runs = configs("dropout", iterations)
    table = {}
    for name, config in runs.items():
        res, _ = _run(name, config, iterations, seeds=seeds)
        table[f"dropout={config.dropout}"] = {
            **{
                metric: _final(res, metric)[0]
                for metric in (
                    "energy_1step",
                    "energy_2step",
                    "energy_floor",
                    "energy_u_1step",
                    "energy_u_2step",
                    "energy_u_floor",
                    "ratio_1step",
                    "ratio_2step",
                )
            },
            "mean_of_10_draws": _robust(res.states, config),
            **_timing(res),
        }
    payload = {
        "configs": runs,
        "seeds": seeds,
        "iterations": iterations,
        "ratio_meaning": RATIO_MEANING,
        "table": table,
        "command": provenance.command(),
        "provenance": provenance.provenance(started),
    }
    _write("ict_dropout", payload)
    return payload


def _scatter(path: str, state, config, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from generative import data as gdata

    params = jax.tree.map(lambda v: v[0], ct.sampling_params(state, config))
    key = jax.random.key(123)
    real = gdata.sample_toy(jax.random.fold_in(key, 0), config.data, 2000)
    one = ct.sample(params, jax.random.fold_in(key, 1), config, 2000)
    two = ct.sample(params, jax.random.fold_in(key, 2), config, 2000, (config.mid_sigma,))
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2), dpi=110, sharex=True, sharey=True)
    for ax, pts, name in zip(
        axes, (real, one, two), ("held-out data", "1 step", "2 steps"), strict=True
    ):
        pts = np.asarray(pts)
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal")
    axes[0].set_xlim(-1.6, 1.6)
    axes[0].set_ylim(-1.6, 1.6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _robust(states, config, draws: int = 10) -> dict:
    """Energy distances averaged over `draws` independent sample / held-out sets of 2000.

    One draw's floor is noisy; the means over several draws pin down the ratio. Returns per
    grid point: mean 1-step, 2-step, 1-step-online distances, the mean floor, the ratios of
    the means (V-statistics), and the mean U-statistics of 1-step, 2-step and the floor.
    """
    from generative import data as gdata
    from generative import metrics as gmetrics

    num = config.eval_samples

    def one_draw(state, key):
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        params = ct.sampling_params(state, config)
        held = gdata.sample_toy(k4, config.data, num)
        one = ct.sample(params, k1, config, num)
        two = ct.sample(params, k2, config, num, (config.mid_sigma,))
        held2 = gdata.sample_toy(k5, config.data, num)
        return jax.numpy.stack(
            [
                gmetrics.energy_distance(one, held),
                gmetrics.energy_distance(two, held),
                gmetrics.energy_distance(ct.sample(state.params, k3, config, num), held),
                gmetrics.energy_distance(held2, held),
                gmetrics.energy_distance_u(one, held),
                gmetrics.energy_distance_u(two, held),
                gmetrics.energy_distance_u(held2, held),
            ]
        )

    keys = jax.random.split(jax.random.key(2024), draws)
    axes = stabilizers.seed_axes(states)  # the step counter is shared, not batched
    per_draw = jax.jit(jax.vmap(jax.vmap(one_draw, in_axes=(None, 0)), in_axes=(axes, None)))(
        states, keys
    )  # [G, draws, 7]
    mean = np.asarray(per_draw).mean(axis=1)
    floor = mean[:, 3]
    return {
        "draws": draws,
        "energy_1step_mean": mean[:, 0],
        "energy_2step_mean": mean[:, 1],
        "energy_1step_online_mean": mean[:, 2],
        "energy_floor_mean": floor,
        "ratio_1step": mean[:, 0] / floor,
        "ratio_2step": mean[:, 1] / floor,
        "ratio_1step_online": mean[:, 2] / floor,
        "energy_u_1step_mean": mean[:, 4],
        "energy_u_2step_mean": mean[:, 5],
        "energy_u_floor_mean": mean[:, 6],
    }


def bar(config: ct.Config, iterations: int) -> dict:
    """The best 2-D recipe, one seed: final energy distances beside the floor, timed."""
    data = config.data
    res, _ = _run(f"bar_{data}", config, iterations, seeds=1, segments=20, eval_every=5)
    row = {
        "data": data,
        "energy_1step": float(_final(res, "energy_1step")[0, 0]),
        "energy_2step": float(_final(res, "energy_2step")[0, 0]),
        "energy_1step_online": float(_final(res, "energy_1step_online")[0, 0]),
        "energy_floor": float(_final(res, "energy_floor")[0, 0]),
        "ratio_1step": float(_final(res, "ratio_1step")[0, 0]),
        "ratio_2step": float(_final(res, "ratio_2step")[0, 0]),
        "energy_u_1step": float(_final(res, "energy_u_1step")[0, 0]),
        "energy_u_2step": float(_final(res, "energy_u_2step")[0, 0]),
        "energy_u_floor": float(_final(res, "energy_u_floor")[0, 0]),
        **_timing(res),
        "mean_of_10_draws": {
            k: np.asarray(v).reshape(-1)[0] if k != "draws" else v
            for k, v in _robust(res.states, config).items()
        },
    }
    os.makedirs(FIGURES, exist_ok=True)
    _scatter(
        os.path.join(FIGURES, f"ct_scatter_{data}.png"),
        res.states,
        config,
        f"{data}: iCT recipe, {iterations} steps; energy/floor 1 step "
        f"{row['ratio_1step']:.1f}, 2 steps {row['ratio_2step']:.1f}",
    )
    _write(f"consistency_bar_{data}", {"config": config, "ratio_meaning": RATIO_MEANING, **row})
    return row


def toys(iterations: int) -> None:
    """The best 2-D recipe on the other toys."""
    rows = [bar(config, iterations) for config in configs("toys", iterations).values()]
    _write("consistency_toys", {"rows": rows})


# --------------------------------------------------------------------------- images


def _grid_png(path: str, images: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, h, w, c = images.shape
    side = int(np.ceil(np.sqrt(n)))
    canvas = np.ones((side * (h + 1) + 1, side * (w + 1) + 1, c), np.float32)
    for i in range(n):
        r, q = divmod(i, side)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = (
            images[i] + 1
        ) / 2
    fig, ax = plt.subplots(figsize=(4.6, 4.8), dpi=110)
    ax.imshow(
        canvas.squeeze(-1) if c == 1 else canvas,
        cmap="gray",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.set_axis_off()
    ax.set_title(textwrap.fill(title, 60), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def images(
    name: str,
    iterations: int,
    stop_after_segments: int | None = None,
    upto: int | None = None,
    tag: str = "",
) -> None:
    """Trains on images (resumable); `upto` writes grids and distances of the checkpoint at
    that iteration (a multiple of iterations // 40) of a run still in progress."""
    config = configs(name, iterations)[name]
    res, log = _run(
        name + tag,
        config,
        upto or iterations,
        segment_length=max(1, iterations // 40),
        eval_every=10,
        checkpoint_every=1,
        stop_after_segments=stop_after_segments,
        # CPU: one jitted step per call (XLA's CPU convolutions are slow inside loops)
        scan=jax.default_backend() != "cpu",
    )
    if res.results["status"] != "completed":
        print(
            f"[consistency_study] {name}: {res.results['status']} at iteration "
            f"{res.results['iterations']}; run the same command again to resume",
            file=sys.stderr,
        )
        return
    params = jax.tree.map(lambda v: v[0], ct.sampling_params(res.states, config))
    key = jax.random.key(7)
    t = time.perf_counter()
    one = np.asarray(ct.sample(params, jax.random.fold_in(key, 1), config, 64))
    two = np.asarray(ct.sample(params, jax.random.fold_in(key, 2), config, 64, (config.mid_sigma,)))
    sample_seconds = time.perf_counter() - t
    fd = {
        k: float(_final(res, k)[0, 0]) for k in ("frechet_1step", "frechet_2step", "frechet_floor")
    }
    os.makedirs(FIGURES, exist_ok=True)
    for steps, imgs in (("1step", one), ("2step", two)):
        _grid_png(
            os.path.join(FIGURES, f"ct_{name}{tag}_{steps}.png"),
            imgs,
            f"{name}, iCT, {res.results['iterations']} of {iterations} steps, "
            f"{steps.replace('step', ' step')}: "
            f"FD {fd['frechet_' + steps]:.2f} (floor {fd['frechet_floor']:.2f})",
        )
    # the total CPU time over every chunk of a resumed run: the sum of logged segments
    _write(
        f"consistency_{name}{tag}",
        {
            "config": config,
            **fd,
            **_timing(res),
            "sample_seconds_128": sample_seconds,
            "segments_logged": len([r for r in log if "train" in r]),
        },
    )


def main(argv=None) -> int:
    p = cli.Parser(prog="python -m benchmarks.consistency_study", description=__doc__)
    p.add_argument("study", choices=STUDIES)
    p.add_argument("--iterations", type=cli.positive_int, default=None)
    p.add_argument(
        "--stop-after-segments",
        type=cli.positive_int,
        default=None,
        help="images: return after this many segments (resume later)",
    )
    p.add_argument(
        "--upto",
        type=cli.positive_int,
        default=None,
        help="images: grids and distances of the checkpoint at this iteration (run unfinished)",
    )
    p.add_argument(
        "--tag",
        default="",
        help="images: suffix of the run directory, figures and results (e.g. _cpu)",
    )
    cli.add_layout_flag(p)
    args = p.parse_args(argv)
    cli.configure_layout(args)
    iterations = args.iterations or DEFAULT_ITERATIONS[args.study]
    if args.study == "ablation":
        ablation(iterations)
    elif args.study == "compare":
        compare(iterations)
    elif args.study == "bar":
        bar(configs("bar", iterations)["bar_moons"], iterations)
    elif args.study == "toys":
        toys(iterations)
    elif args.study == "dropout":
        dropout(iterations)
    else:
        images(args.study, iterations, args.stop_after_segments, args.upto, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
