"""The representation field: BYOL's and MoCo v3's momentum encoders on the age axis, the EMA
scaling rule on BYOL, and a supervised encoder as the ceiling.

- BYOL and MoCo v3 on cluttered MNIST (`representation`, a small conv encoder): the
  target follows `stabilizers.periodic(every, decay)` at the study's ages, hard and EMA;
  age 0 is no target (for BYOL: its predictor and stop-gradient alone, SimSiam); the
  algorithm's own cosine schedule is the reference point, drawn at the mean age of its
  decay averaged over the run.
- The EMA scaling rule (Busbridge et al. 2023): with the batch multiplied by k and the
  number of steps divided by k (the same samples), the decay d becomes d^k. The optimizer
  is AdamW, so the learning rate follows the square-root rule of adaptive optimizers
  (lr sqrt(k), Malladi et al. 2022), with the warmup the same fraction of the run and
  Adam's betas and the weight decay kept. The control scales the batch and the learning
  rate alike but keeps d. k = 1 is the age-axis cell at the same decay.
- Score: linear-probe accuracy on held-out digits; floor: the untrained (random) encoder
  of the same run; ceiling: a supervised encoder of the same size, batch and samples
  (`supervised`). Failed: non-finite, or collapse (the per-dimension std of the
  l2-normalised projections below 0.01, SimSiam's criterion).

References: Grill et al., BYOL, 2020; Chen, Xie & He, MoCo v3, 2021; Chen & He, SimSiam,
2021; Busbridge et al., How to scale your EMA, 2023; Malladi et al., On the SDEs and
scaling rules for adaptive gradient algorithms, 2022.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

import stabilizers
from benchmarks import stats
from benchmarks.cross_field import common

DEFINITION = (
    "BYOL, MoCo v3: score = linear-probe accuracy on held-out digits, floor the random "
    "encoder of the same run, ceiling the supervised encoder's IQM (same encoder, batch and "
    "samples, cross-entropy on the probe's labelled images); failed = non-finite or "
    "collapse (per-dimension std of the l2-normalised projections below 0.01)."
)
TASK = "cluttered_mnist"
COLLAPSE_STD = 0.01


@dataclasses.dataclass(frozen=True)
class Budget:
    """The sizes of one study (quick or full)."""

    iterations: int
    batch_size: int
    channels: tuple[int, ...]
    evaluations: int
    ages: tuple[int, ...]
    num_train: int
    num_test: int
    probe_train: int
    calibration: int
    scaling_ks: tuple[float, ...]
    scaling_age: int


QUICK = Budget(
    iterations=200,
    batch_size=64,
    channels=(8, 16, 32),
    evaluations=2,
    ages=(0, 3, 10),
    num_train=4000,
    num_test=1000,
    probe_train=2000,
    calibration=500,
    scaling_ks=(0.25, 4.0),
    scaling_age=10,
)
FULL = Budget(
    iterations=800,
    batch_size=64,
    channels=(16, 32, 64),
    evaluations=2,
    ages=(0, 1, 3, 10, 30),
    num_train=8000,
    num_test=2000,
    probe_train=4000,
    calibration=1000,
    scaling_ks=(0.25, 4.0),
    scaling_age=30,
)


def ssl_config(module, budget: Budget, base=None, k: float = 1.0):
    """`module`'s config at the study's sizes, with batch x k and learning rate x sqrt(k)."""
    from representation import data as data_lib

    base = module.Config() if base is None else base
    batch = int(round(budget.batch_size * k))
    return dataclasses.replace(
        base,
        data=data_lib.DataSpec(num_train=budget.num_train, num_test=budget.num_test),
        batch_size=batch,
        total_steps=budget.batch_size * budget.iterations,
        channels=budget.channels,
        hidden_dim=128,
        projection_dim=64,
        probe_train=budget.probe_train,
        calibration=budget.calibration,
        learning_rate=base.learning_rate * math.sqrt(k),
        target_tracker="periodic",
    )


def _segments(iterations: int, evaluations: int) -> dict:
    """10 logged segments (5 when 10 does not divide the run), `evaluations` of them
    evaluated (1 when that does not divide them)."""
    segments = 10 if iterations % 10 == 0 else 5
    return {"segments": segments, "evaluations": evaluations if segments % evaluations == 0 else 1}


def _learners():
    from representation import byol, moco

    return {"byol": (byol, None), "moco_v3": (moco, moco.PRESETS["v3"])}


def cosine_age(config, base_momentum: float) -> float:
    """The mean age of an EMA at the cosine schedule's decay averaged over the run."""
    from representation import common as ssl_common

    k = jnp.arange(ssl_common.iterations(config))
    mean = float(jnp.mean(stabilizers.schedules.cosine_momentum(base_momentum, len(k))(k)))
    return mean / (1.0 - mean)


def _age_program(name: str, budget: Budget) -> common.Program:
    module, base = _learners()[name]
    config = ssl_config(module, budget, base)
    age_list = [a for a in common.ages(budget.iterations) if a in budget.ages]
    momentum = config.base_momentum if name == "byol" else config.momentum
    reference = common.Cell(
        {"target_every": 1, "target_decay": -1.0},
        {"mechanism": "schedule", "age": cosine_age(config, momentum), "every": 1, "decay": -1.0},
    )
    cells = common.age_cells(("hard", "ema"), age_list, "target_every", "target_decay") + [
        reference
    ]
    return common.Program(
        name=name,
        field="representation",
        algorithm=name,
        task=TASK,
        module=module,
        config=config,
        iterations=budget.iterations,
        cells=tuple(cells),
        **_segments(budget.iterations, budget.evaluations),
    )


def _scaling_program(budget: Budget, k: float) -> common.Program:
    from representation import byol

    decay = common.tracker("ema", budget.scaling_age)[1]
    iterations = int(round(budget.iterations / k))
    cells = tuple(
        common.Cell(
            {"target_decay": d},
            {"mechanism": "ema", "age": d / (1 - d), "decay": d, "k": k, "variant": variant},
        )
        for variant, d in (("rule", decay**k), ("control", decay))
    )
    return common.Program(
        name=f"byol_k{k:g}",
        field="representation",
        algorithm="byol",
        task=TASK,
        module=byol,
        config=ssl_config(byol, budget, k=k),
        iterations=iterations,
        cells=cells,
        **_segments(iterations, budget.evaluations),
    )


def _supervised_program(budget: Budget) -> common.Program:
    from benchmarks.cross_field import supervised

    return common.Program(
        name="supervised",
        field="representation",
        algorithm="supervised",
        task=TASK,
        module=supervised,
        config=ssl_config(supervised, budget),
        iterations=budget.iterations,
        cells=(common.Cell({}, {"mechanism": "supervised"}),),
        **_segments(budget.iterations, budget.evaluations),
    )


def programs(quick: bool) -> list[common.Program]:
    budget = QUICK if quick else FULL
    return (
        [_supervised_program(budget), _age_program("byol", budget)]
        + [_scaling_program(budget, k) for k in budget.scaling_ks]
        + [_age_program("moco_v3", budget)]
    )


def rows(program: common.Program, results: dict, out_dir: str) -> list[dict]:
    cells, seeds = len(program.cells), len(results["seeds"])
    probe = common.cell_values(results, "linear_probe")
    initial = common.initial_values(out_dir, "linear_probe", cells, seeds)
    lag = common.cell_values(results, "lag", "final_train")
    spread = common.cell_values(results, "projection_std", "final_train")
    diverged = np.asarray(results["diverged_at_iteration"]) >= 0
    x, curve = common.learning_curve(out_dir, "linear_probe", cells, seeds)
    axis = {"supervised": "ceiling"}.get(program.algorithm, "age")
    out = []
    for c, cell in enumerate(program.cells):
        labels = {"axis": "scaling" if "k" in cell.labels else axis, **cell.labels}
        for s, seed in enumerate(results["seeds"]):
            collapsed = np.isfinite(spread[c, s]) and spread[c, s] < COLLAPSE_STD
            out.append(
                common.row(
                    **{**common.identity(program, cell, seed), **labels},
                    score=probe[c, s],
                    score_name="linear-probe accuracy",
                    normalized=None,
                    failed=bool(diverged[c, s] or not np.isfinite(probe[c, s]) or collapsed),
                    lag=lag[c, s],
                    auc=None,
                    floor=initial[c, s],
                    curve_x=x.tolist(),
                    curve=curve[:, c, s].tolist(),
                    run_updates=program.iterations,
                    learning_rate=program.config.learning_rate,
                    projection_std=spread[c, s],
                )
            )
    return out + _scaling_reference(program, out)


def _scaling_reference(program: common.Program, age_rows: list[dict]) -> list[dict]:
    """BYOL's EMA cell at the scaling rule's age, again as the k = 1 point of that axis."""
    if program.algorithm != "byol" or program.name != "byol":
        return []
    return common.scaling_reference(age_rows, budget_of(program).scaling_age)


def budget_of(program: common.Program) -> Budget:
    """The budget (quick or full) an age-axis program was made with, by its length."""
    for budget in (QUICK, FULL):
        if program.iterations == budget.iterations:
            return budget
    raise ValueError(f"{program.name}: {program.iterations} iterations is neither budget's")


def ceilings(rows: list[dict]) -> list[dict]:
    """Every row's ceiling: the supervised encoder's IQM probe accuracy."""
    scores = [r["score"] for r in rows if r["algorithm"] == "supervised" and r["score"] is not None]
    if not scores:
        return rows
    best = float(stats.iqm(np.asarray(scores)))
    return [{**r, "ceiling": best} for r in rows]
