"""The generative field: Consistency Training's teacher on the age axis, the VAE's inner loop
on the partner-speed axis.

- CT on two moons (`generative.consistency`, the CT recipe with a small residual MLP):
  the teacher follows `stabilizers.periodic(every, decay)` at the study's ages, hard and
  EMA, with age 0 (no teacher: iCT's mu = 0) and the mu(k) schedule as a reference point;
  the same with a LayerNorm after each hidden dense layer (PQN's placement), with and
  without an EMA teacher. Score: minus the energy distance of one-step samples of the
  online network over the held-out floor (the same distance between two held-out sets),
  so -1 is the ceiling; the floor is the untrained network's. Samples come from the online
  params: the sampling EMA (decay 0.999) would still be close to its initialisation in
  runs this short, whatever the teacher does. Failed: non-finite, or a ratio above the
  untrained network's.
- The VAE on He et al.'s synthetic data (`generative.vae`): basic training (cap 0) and the
  aggressive inner loop capped at 1 to 100 encoder steps per decoder step, one program per
  cap (the cap is a size). Its axis is the partner-speed ratio, encoder updates over
  decoder updates, counted from the run's metrics. Score: minus the importance-sampled
  NLL; floor: the untrained model; ceiling: the best cap's IQM. Failed: posterior collapse
  (no active unit and KL < 0.05) or non-finite.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from benchmarks import stats
from benchmarks.cross_field import common

DEFINITION = (
    "CT: score = -(energy distance of one-step samples of the online network / the "
    "held-out floor), ceiling -1, floor the untrained network of the same run; failed = "
    "non-finite or worse than untrained. VAE: score = -NLL (importance sampled), floor the "
    "untrained model, ceiling the best cap's IQM; failed = posterior collapse (no active "
    "unit and KL < 0.05) or non-finite."
)
TASK_CT = "moons"
TASK_VAE = "synthetic"


@dataclasses.dataclass(frozen=True)
class Budget:
    """The sizes of one study (quick or full)."""

    ct_iterations: int
    ct_variants: tuple[str, ...]
    vae_iterations: int
    vae_epoch: int
    vae_caps: tuple[int, ...]
    vae_iw_samples: int
    vae_eval_examples: int


QUICK = Budget(
    ct_iterations=600,
    ct_variants=(),
    vae_iterations=100,
    vae_epoch=25,
    vae_caps=(0, 3, 30),
    vae_iw_samples=50,
    vae_eval_examples=200,
)
FULL = Budget(
    ct_iterations=4000,
    ct_variants=("short", "lr_x4"),
    vae_iterations=300,
    vae_epoch=60,
    vae_caps=(0, 1, 3, 10, 30, 100),
    vae_iw_samples=50,
    vae_eval_examples=500,
)
CT_VARIANTS = {"short": dict(length=0.25), "lr_x4": dict(lr=4.0)}
"""Variants of the EMA teacher's sweep for answer 2 (does the best age move?): a run a
quarter as long, and a learning rate 4 times higher."""


# --------------------------------------------------------------------------- CT


def ct_config(iterations: int, layer_norm: bool = False, lr_factor: float = 1.0):
    """CT on two moons with a small network, a periodic teacher and online-param samples."""
    from generative import consistency

    base = consistency.Config()
    return dataclasses.replace(
        base,
        width=64,
        depth=2,
        batch_size=128,
        total_steps=128 * iterations,
        eval_samples=1000,
        teacher_tracker="periodic",
        sample_from="online",
        layer_norm=layer_norm,
        learning_rate=base.learning_rate * lr_factor,
    )


def schedule_age(config) -> float:
    """The mean age of an EMA at the mu(k) schedule's decay averaged over the run."""
    from generative import consistency

    k = jnp.arange(consistency.num_iterations(config))
    mean = float(jnp.mean(consistency.target_decay(config)(k)))
    return mean / (1.0 - mean)


FIELDS_CT = ("teacher_every", "teacher_decay")


def _schedule_cell(config, mechanism: str = "schedule", variant: str = "base") -> common.Cell:
    """The mu(k) schedule as a cell, drawn at the mean age of its decay."""
    labels = {"mechanism": mechanism, "age": schedule_age(config), "every": 1, "decay": -1.0}
    return common.Cell({"teacher_every": 1, "teacher_decay": -1.0}, {**labels, "variant": variant})


def _ct_program(name: str, config, iterations: int, cells: list) -> common.Program:
    return common.Program(
        name=name,
        field="generative",
        algorithm="ct",
        task=TASK_CT,
        module=_consistency(),
        config=config,
        iterations=iterations,
        cells=tuple(cells),
    )


def _consistency():
    from generative import consistency

    return consistency


def _ct_programs(budget: Budget) -> list[common.Program]:
    """CT's sweeps; each has an even number of cells (the schedule completes an odd one), so
    that with an odd number of seeds the grid still splits over two devices."""
    n = budget.ct_iterations
    ages = common.ages(n)
    config, normed = ct_config(n), ct_config(n, layer_norm=True)
    programs = [
        _ct_program(
            "ct",
            config,
            n,
            common.age_cells(("hard", "ema"), ages, *FIELDS_CT) + [_schedule_cell(config)],
        ),
        _ct_program(
            "ct_layernorm",
            normed,
            n,
            _even(
                common.age_cells(("ema",), ages, *FIELDS_CT, prefix="layernorm_"),
                _schedule_cell(normed, "layernorm_schedule"),
            ),
        ),
    ]
    for variant in budget.ct_variants:
        spec = CT_VARIANTS[variant]
        length = int(n * spec.get("length", 1.0))
        variant_config = ct_config(length, lr_factor=spec.get("lr", 1.0))
        cells = [
            c._replace(labels={**c.labels, "variant": variant})
            for c in common.age_cells(("ema",), common.ages(length), *FIELDS_CT)
        ]
        cells = _even(cells, _schedule_cell(variant_config, variant=variant))
        programs.append(_ct_program(f"ct_{variant}", variant_config, length, cells))
    return programs


def _even(cells: list, extra: common.Cell) -> list:
    return cells + [extra] if len(cells) % 2 else cells


def _ct_rows(program: common.Program, results: dict, out_dir: str) -> list[dict]:
    cells, seeds = len(program.cells), len(results["seeds"])
    ratio = common.cell_values(results, "ratio_1step")
    initial = common.initial_values(out_dir, "ratio_1step", cells, seeds)
    lag = common.cell_values(results, "lag", "final_train")
    diverged = np.asarray(results["diverged_at_iteration"]) >= 0
    x, curve = common.learning_curve(out_dir, "ratio_1step", cells, seeds)
    rows = []
    for c, cell in enumerate(program.cells):
        for s, seed in enumerate(results["seeds"]):
            failed = diverged[c, s] or not np.isfinite(ratio[c, s]) or ratio[c, s] > initial[c, s]
            rows.append(
                common.row(
                    **common.identity(program, cell, seed),
                    score=-ratio[c, s],
                    score_name="-energy distance / held-out floor",
                    normalized=None,
                    failed=failed,
                    lag=lag[c, s],
                    auc=None,
                    floor=-initial[c, s],
                    ceiling=-1.0,
                    curve_x=x.tolist(),
                    curve=(-curve[:, c, s]).tolist(),
                    run_updates=program.iterations,
                    learning_rate=program.config.learning_rate,
                )
            )
    return rows


# --------------------------------------------------------------------------- VAE


def vae_config(budget: Budget, cap: int):
    """The synthetic setting at the study's length; cap 0 is basic training."""
    from generative import vae

    return dataclasses.replace(
        vae.Config(),
        aggressive=cap > 0,
        inner_max_steps=max(cap, 1),
        epoch_iterations=budget.vae_epoch,
        total_steps=budget.vae_iterations * vae.Config().batch_size,
        iw_samples=budget.vae_iw_samples,
        eval_examples=budget.vae_eval_examples,
    )


def _vae_programs(budget: Budget) -> list[common.Program]:
    from generative import vae

    return [
        common.Program(
            name=f"vae_cap{cap}",
            field="generative",
            algorithm="vae",
            task=TASK_VAE,
            module=vae,
            config=vae_config(budget, cap),
            iterations=budget.vae_iterations,
            cells=(
                common.Cell({}, {"mechanism": "inner_loop", "cap": cap, "setting": f"cap {cap}"}),
            ),
            segments=budget.vae_iterations // budget.vae_epoch,
            evaluations=1,
        )
        for cap in budget.vae_caps
    ]


def update_ratio(out_dir: str, seeds: int) -> np.ndarray:
    """`[seeds]`: encoder updates over decoder updates over the run. Each iteration moves
    the decoder once and the encoder `inner_steps` times in the inner loop, plus once in
    the outer step when the aggressive phase is off (segment means from the log)."""
    from benchmarks import harness

    records = harness.read_log(out_dir)
    _, inner = harness.curve(records, "inner_steps", "iteration", kind="train")
    _, aggressive = harness.curve(records, "aggressive", "iteration", kind="train")
    encoder = inner + (1.0 - aggressive)
    return np.mean(encoder, axis=0)[:seeds]


def _vae_rows(program: common.Program, results: dict, out_dir: str) -> list[dict]:
    seeds = len(results["seeds"])
    nll = common.cell_values(results, "nll")[0]
    initial = common.initial_values(out_dir, "nll", 1, seeds)[0]
    au = common.cell_values(results, "au")[0]
    kl = common.cell_values(results, "kl")[0]
    ratio = update_ratio(out_dir, seeds)
    diverged = np.asarray(results["diverged_at_iteration"])[0] >= 0
    rows = []
    for s, seed in enumerate(results["seeds"]):
        collapsed = au[s] == 0 and kl[s] < 0.05
        rows.append(
            common.row(
                **common.identity(program, program.cells[0], seed),
                axis="partner",
                score=-nll[s],
                score_name="-NLL (nats)",
                normalized=None,
                failed=bool(diverged[s] or not np.isfinite(nll[s]) or collapsed),
                lag=None,
                auc=None,
                floor=-initial[s],
                ratio=ratio[s],
                kl=kl[s],
                active_units=au[s],
                run_updates=program.iterations,
            )
        )
    return rows


def vae_ceiling(rows: list[dict]) -> list[dict]:
    """Sets every VAE row's ceiling to the best IQM score over its caps."""
    vae_rows = [r for r in rows if r["algorithm"] == "vae"]
    by_cap: dict[int, list[float]] = {}
    for r in vae_rows:
        if r["score"] is not None:
            by_cap.setdefault(r["cap"], []).append(r["score"])
    if not by_cap:
        return rows
    best = max(float(stats.iqm(np.asarray(v))) for v in by_cap.values())
    return [{**r, "ceiling": best} if r["algorithm"] == "vae" else r for r in rows]


# --------------------------------------------------------------------------- the field


def programs(quick: bool) -> list[common.Program]:
    budget = QUICK if quick else FULL
    return _ct_programs(budget) + _vae_programs(budget)


def rows(program: common.Program, results: dict, out_dir: str) -> list[dict]:
    if program.algorithm == "vae":
        return _vae_rows(program, results, out_dir)
    return _ct_rows(program, results, out_dir)


ceilings = vae_ceiling
