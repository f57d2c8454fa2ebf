"""Cost of shared periods under vmap: `periodic` and `delayed` against the plain update.

    python -m benchmarks.transform_cost --seeds 32 --steps 400

For `seeds` vmapped copies of an MLP-sized parameter tree (3 layers of 256 x 256), times
one jitted `lax.scan` of `steps` updates of each transform, after `block_until_ready`,
compile time apart. Each `stabilizers` transform runs twice: with the state vmapped by
`stabilizers.seed_axes` (its counter shared by all seeds, so `lax.cond` stays a branch)
and with a plain `jax.vmap` (a batched counter, so `cond` becomes a `select` that runs
both branches). Rows:

- `adam`: `optax.adam` every step, the anchor for `delayed(adam, 2)`;
- `delayed(adam, 2)`: Adam on every second step;
- `ema`: the soft target update, the anchor for `periodic`;
- `periodic(500)`: a hard copy every 500 steps.
"""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import optax

import stabilizers
from benchmarks import cli, provenance


def _params(key, width: int, depth: int):
    keys = jax.random.split(key, depth)
    return {
        f"layer{i}": {"w": jax.random.normal(k, (width, width)) / width**0.5, "b": jnp.zeros(width)}
        for i, k in enumerate(keys)
    }


def measure(
    tx: optax.GradientTransformation,
    *,
    seeds: int,
    steps: int,
    shared: bool,
    width: int = 256,
    depth: int = 3,
    repeats: int = 3,
) -> dict:
    keys = jax.random.split(jax.random.key(0), seeds)
    params = jax.vmap(lambda k: _params(k, width, depth))(keys)
    grads = jax.tree.map(lambda p: 1e-3 * jnp.ones_like(p), params)
    axes = stabilizers.seed_axes(jax.eval_shape(tx.init, jax.tree.map(lambda p: p[0], params)))
    if not shared:
        axes = 0
    state = jax.vmap(tx.init, out_axes=axes)(params)

    def one(g, s, p):
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    vstep = jax.vmap(one, in_axes=(0, axes, 0), out_axes=(0, axes))

    def run(params, state):
        def body(carry, _):
            p, s = carry
            p, s = vstep(grads, s, p)
            return (p, s), None

        return jax.lax.scan(body, (params, state), None, length=steps)[0]

    t = time.perf_counter()
    compiled = jax.jit(run).lower(params, state).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(params, state))  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(compiled(params, state))
        best = min(best, time.perf_counter() - t)
    return {"us_per_step": 1e6 * best / steps, "compile_s": compile_s}


def main(argv=None) -> list[dict]:
    ap = cli.Parser(prog="python -m benchmarks.transform_cost", description=__doc__)
    ap.add_argument("--seeds", type=cli.positive_int, default=32)
    ap.add_argument("--steps", type=cli.positive_int, default=400)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    cli.add_layout_flag(ap)
    args = ap.parse_args(argv)
    cli.configure_layout(args)
    rows = []
    cases = [
        ("adam", optax.adam(1e-3), None),
        ("delayed(adam, 2)", stabilizers.delayed(optax.adam(1e-3), 2), "adam"),
        ("ema", stabilizers.ema(0.995), None),
        ("periodic(500)", stabilizers.periodic(500), "ema"),
    ]
    anchors = {}
    for name, tx, anchor in cases:
        for shared in [True, False] if anchor else [True]:
            m = measure(tx, seeds=args.seeds, steps=args.steps, shared=shared)
            label = name + (
                "" if anchor is None else (" shared counter" if shared else " batched counter")
            )
            if anchor is None:
                anchors[name] = m["us_per_step"]
            row = {
                "transform": label,
                "seeds": args.seeds,
                **m,
                "vs_anchor": None if anchor is None else m["us_per_step"] / anchors[anchor],
            }
            rows.append(row)
            print(
                f"{label:34s} {m['us_per_step']:9.1f} us/step  compile {m['compile_s']:.2f} s"
                + ("" if anchor is None else f"  ({row['vs_anchor']:.2f}x {anchor})"),
                flush=True,
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"provenance": provenance.provenance(), "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
