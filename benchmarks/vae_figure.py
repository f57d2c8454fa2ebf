"""He et al.'s Figure 2 on the synthetic data: the posterior mean space, basic vs aggressive.

    python -m benchmarks.vae_figure --out docs/figures/vae_posterior_mean.png

For a VAE with a scalar latent (the authors' `toy.py` sets nz = 1) trained on the
synthetic data, each of 300 training sequences x is a point (mu_x, mu'_x):

- x axis: the approximate posterior mean mu_x = E_{q_phi(z|x)}[z] (the encoder);
- y axis: the model posterior mean mu'_x = E_{p_theta(z|x)}[z], by quadrature on a grid
  z in [-20, 20] with step 0.1 (`generative.vae.posterior_mean_on_grid`).

At initialisation every point sits near (0, 0). An inference network that keeps up with
the model puts the points on the diagonal mu_x = mu'_x; a lagging one leaves them on a
vertical line: the model posterior moves (the decoder starts to use z) while the encoder
still maps every x near the same mean, and the decoder then learns to ignore z
(collapse). Rows: basic and aggressive training, same seed; columns: iterations.
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

from benchmarks import cli, provenance
from generative import vae


def configs(unroll: int = 1) -> dict[str, vae.Config]:
    """The figure's rows: basic and aggressive training of a VAE with a scalar latent."""
    base = vae.Config(latent=1, iw_samples=0, unroll=unroll)
    return {"basic": base, "aggressive": dataclasses.replace(base, aggressive=True)}


def snapshots(config, iterations, seed, points, grid):
    """[(iteration, mu [P], model mean [P], kl, mi)] at the given iterations."""
    state = vae.init(jax.random.key(seed), config)
    data = vae.dataset(config)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(data.train[rng.choice(len(data.train), points, replace=False)])
    grid = jnp.asarray(grid)

    @jax.jit
    def measure(enc, dec, key):
        mu, logvar = jax.vmap(lambda x: vae.encode(enc, x, config))(xs)
        model = jax.lax.map(lambda x: vae.model_posterior_mean(dec, x, grid, config), xs)
        z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape)
        kl = jnp.mean(jax.vmap(vae.gaussian_kl)(mu, logvar))
        return mu[:, 0], model[:, 0], kl, vae.mutual_information(mu, logvar, z)

    # One compiled program advances by `chunk` iterations (the gcd of the gaps between
    # snapshots), so each training mode compiles its step once.
    chunk = math.gcd(*[b - a for a, b in zip([0, *iterations], iterations, strict=False) if b > a])
    advance = jax.jit(
        lambda s: jax.lax.scan(lambda c, _: vae.step(c, config), s, None, length=chunk)[0]
    )

    out, done = [], 0
    for it in iterations:
        while done < it:
            state = advance(state)
            done += chunk
        mu, model, kl, mi = jax.device_get(measure(state.enc, state.dec, jax.random.key(it)))
        out.append(
            {
                "iteration": it,
                "mu": np.asarray(mu).tolist(),
                "model": np.asarray(model).tolist(),
                "kl": float(kl),
                "mi": float(mi),
                "aggressive": bool(state.switch.active),
            }
        )
        print(
            f"[vae_figure] aggressive={config.aggressive} it={it} kl={float(kl):.3f} "
            f"mi={float(mi):.3f} phase_on={bool(state.switch.active)}",
            file=sys.stderr,
            flush=True,
        )
    return out


def plot(path, rows, labels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = len(rows[0])
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.0 * cols, 3.1 * len(rows)), dpi=120)
    axes = np.atleast_2d(axes)
    for r, (snaps, label) in enumerate(zip(rows, labels, strict=True)):
        for c, snap in enumerate(snaps):
            ax = axes[r, c]
            mu, model = np.asarray(snap["mu"]), np.asarray(snap["model"])
            lim = max(1.0, float(np.percentile(np.abs(np.concatenate([mu, model])), 99)) * 1.15)
            ax.plot([-lim, lim], [-lim, lim], color="0.6", lw=0.8, ls="--")
            ax.scatter(mu, model, s=4, alpha=0.6, color="C0" if r == 0 else "C3")
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_title(
                f"{label}, iter {snap['iteration']}\nKL {snap['kl']:.2f}  MI {snap['mi']:.2f}",
                fontsize=9,
            )
            if r == len(rows) - 1:
                ax.set_xlabel("approx. posterior mean $\\mu_x$", fontsize=8)
            if c == 0:
                ax.set_ylabel("model posterior mean $\\mu'_x$", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = cli.Parser(prog="python -m benchmarks.vae_figure", description=__doc__)
    p.add_argument("--out", default="docs/figures/vae_posterior_mean.png")
    p.add_argument("--data-out", default="runs/vae_figure/snapshots.json")
    p.add_argument("--iterations", default="0,50,200,1000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--points", type=cli.positive_int, default=300)
    p.add_argument("--zmin", type=float, default=-20.0)
    p.add_argument("--zmax", type=float, default=20.0)
    p.add_argument("--dz", type=float, default=0.1)
    p.add_argument(
        "--scan-unroll",
        type=cli.positive_int,
        default=1,
        help="unroll of the LSTM scans (1 compiles fastest on CPU; 12 runs faster on a GPU)",
    )
    cli.add_layout_flag(p)
    args = p.parse_args(argv)
    try:
        iterations = sorted(int(i) for i in args.iterations.split(","))
    except ValueError:
        iterations = [-1]
    if min(iterations) < 0:
        p.error(
            f"argument --iterations: expected integers >= 0, e.g. 0,50,200; got {args.iterations!r}"
        )
    if not (args.dz > 0 and args.zmax > args.zmin):
        p.error(f"--zmin {args.zmin} --zmax {args.zmax} --dz {args.dz}: need zmin < zmax, dz > 0")
    cli.configure_layout(args)
    grid = np.arange(args.zmin, args.zmax + args.dz / 2, args.dz, dtype=np.float32)[:, None]
    rows, labels, timing = [], [], {}
    for label, cfg in configs(args.scan_unroll).items():
        t = time.perf_counter()
        rows.append(snapshots(cfg, iterations, args.seed, args.points, grid))
        labels.append(label)
        timing[label] = time.perf_counter() - t
    plot(args.out, rows, labels)
    os.makedirs(os.path.dirname(os.path.abspath(args.data_out)), exist_ok=True)
    with open(args.data_out, "w") as f:
        json.dump(
            {
                "labels": labels,
                "rows": rows,
                "seconds": timing,
                "grid": [args.zmin, args.zmax, args.dz],
                "provenance": provenance.provenance(),
            },
            f,
        )
    print(f"[vae_figure] wrote {args.out} ({timing})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
