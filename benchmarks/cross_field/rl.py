"""The RL field: DQN's and SAC's targets on the age axis, normalization instead of a target,
TD3's policy delay on the partner-speed axis, and the EMA scaling rule on DQN.

- DQN on CartPole-v1 (`agents.dqn`, `target="tracker"`): the target follows
  `stabilizers.periodic(target_period, target_decay)` at the study's ages in gradient
  updates of the online network, hard copy and EMA; age 0 is no target (a copy after every
  update). The same with a LayerNorm after each hidden dense layer, before its ReLU (PQN,
  Gallici et al. 2024), without a target and with EMA targets.
- DQN on Breakout-MinAtar (`agents.dqn`'s "minatar" preset: the MinAtar paper's DQN,
  Young & Tian 2019, with its convolution, RMSProp and Huber loss; `target="tracker"`):
  the same age axis, hard and EMA, on a short run (the exploration schedule and the replay
  start scaled to it), as its own algorithm "dqn_minatar" so that its panel is apart from
  CartPole's.
- SAC on Pendulum-v1 (`agents.sac`, the "pendulum" preset, `target="tracker"`): the
  critics' targets on the same axis, hard and EMA, age 0 no target. CrossQ (Bhatt et al.
  2024, `critic="crossq"`): batch renormalization in the critics, the current and next
  state-actions in one forward pass, Adam b1 = 0.5; without a target (its bootstrap from
  the online critics) and with EMA targets. The critic keeps the preset's width (the paper
  widens it to 2048) so that the study fits a CPU.
- TD3 on Pendulum-v1 (the "pendulum" preset): policy delay d in {1, 2, 4, 8}, one program
  per d (a size), as partner-speed rows whose ratio is critic updates per actor update, d.
- The EMA scaling rule (Busbridge et al. 2023) on DQN: the batch times k and the gradient
  updates divided by k (`train_every` times k: the same env steps and samples), the EMA
  decay d^k ("rule") or d ("control"). The optimizer is Adam, so the learning rate is
  scaled by sqrt(k) (the square-root rule of adaptive optimizers, Malladi et al. 2022, as
  in the representation field), Adam's betas kept. k = 1 is the age-axis EMA cell at the
  same decay ("reference").
- Score: the mean return of the evaluation episodes (greedy for DQN, the mean or
  deterministic action for SAC and TD3). Floor: the untrained networks' return (evaluated
  at iteration 0 of each run) averaged over every run of the task in the study. Ceiling:
  CartPole-v1's maximum return, 500; for Pendulum-v1 and Breakout-MinAtar the best IQM
  return over every setting of that task in the study (no published return exists at
  these budgets). Failed: non-finite, or a normalized score below
  `FAIL_BELOW`.

References: Mnih et al. 2015 (DQN); Young & Tian, MinAtar, 2019; Haarnoja et al. 2018
(SAC); Fujimoto et al. 2018 (TD3); Gallici et al., Simplifying deep temporal difference
learning, 2024 (PQN); Bhatt et al., CrossQ, ICLR 2024; Busbridge et al., How to scale
your EMA, NeurIPS 2023; Malladi et al., On the SDEs and scaling rules for adaptive
gradient algorithms, 2022.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from benchmarks import stats
from benchmarks.cross_field import common

FAIL_BELOW = 0.1
"""A run whose normalized score is below this failed (it stayed near the untrained one)."""
CARTPOLE_MAX = 500.0
DEFINITION = (
    "score = mean evaluation return (greedy DQN; the mean action of SAC, the deterministic "
    "actor of TD3); floor = the untrained networks' return (iteration 0 of each run), "
    "averaged over the study's runs of the task; "
    f"ceiling = CartPole-v1's maximum return ({CARTPOLE_MAX:g}), and for Pendulum-v1 and "
    "Breakout-MinAtar the best IQM return over every setting of that task in the study "
    "(measured, not published); "
    f"failed = non-finite or a normalized score below {FAIL_BELOW:g}."
)
CARTPOLE = "CartPole-v1"
PENDULUM = "Pendulum-v1"
MINATAR = "Breakout-MinAtar"
MEASURED_CEILING = (PENDULUM, MINATAR)
"""Tasks whose ceiling is the study's best IQM return over that task's settings."""
FIELDS = ("target_period", "target_decay")


@dataclasses.dataclass(frozen=True)
class Budget:
    """The sizes of one study (quick or full)."""

    dqn_env_steps: int
    dqn_ages: tuple[float, ...]
    pendulum_env_steps: int
    pendulum_ages: tuple[float, ...]
    delays: tuple[int, ...]
    scaling_ks: tuple[float, ...]
    scaling_age: float
    minatar_frames: int
    minatar_ages: tuple[float, ...]
    eval_episodes: int = 10


QUICK = Budget(
    dqn_env_steps=20_000,
    dqn_ages=(0, 3, 30, 300),
    pendulum_env_steps=5_000,
    pendulum_ages=(0, 3, 30, 300),
    delays=(1, 2, 4, 8),
    scaling_ks=(0.25, 4.0),
    scaling_age=30,
    minatar_frames=10_000,
    minatar_ages=(0, 10, 100),
    eval_episodes=5,
)
FULL = Budget(
    dqn_env_steps=50_000,
    dqn_ages=common.AGE_GRID,
    pendulum_env_steps=15_000,
    pendulum_ages=common.AGE_GRID,
    delays=(1, 2, 4, 8),
    scaling_ks=(0.25, 4.0),
    scaling_age=100,
    minatar_frames=30_000,
    minatar_ages=(0, 10, 100, 1000),
)

DQN_NUM_ENVS = 4
DQN_TRAIN_EVERY = 4
"""Env steps per gradient update of DQN at k = 1 (so k = 1/4 is one update per env step)."""


# --------------------------------------------------------------------------- configs


def dqn_config(budget: Budget, k: float = 1.0, layer_norm: bool = False):
    """DQN on CartPole-v1 with a traced target tracker, at batch 64 k, an update every
    4 k env steps and Adam's learning rate 1e-3 sqrt(k)."""
    from agents import dqn

    return dataclasses.replace(
        dqn.Config(),
        num_envs=DQN_NUM_ENVS,
        total_steps=budget.dqn_env_steps,
        buffer_size=10_000,
        batch_size=int(round(64 * k)),
        hidden=(64, 64),
        target="tracker",
        learning_starts=1_024,
        train_every=int(round(DQN_TRAIN_EVERY * k)),
        epsilon_steps=budget.dqn_env_steps // 2,
        eval_episodes=budget.eval_episodes,
        learning_rate=1e-3 * math.sqrt(k),
        layer_norm=layer_norm,
    )


def minatar_config(budget: Budget):
    """The MinAtar paper's DQN (`dqn.PRESETS["minatar"]`) on Breakout-MinAtar with a traced
    target tracker, for `budget.minatar_frames` frames: epsilon falls over the first half,
    after a replay start of a tenth of the run (at most the paper's 5000 frames)."""
    from agents import dqn

    frames = budget.minatar_frames
    start = min(5_000, frames // 10)
    return dataclasses.replace(
        dqn.PRESETS["minatar"],
        env=MINATAR,
        total_steps=frames,
        buffer_size=min(100_000, frames),
        target="tracker",
        learning_starts=start,
        epsilon_delay=start,
        epsilon_steps=frames // 2,
        eval_episodes=budget.eval_episodes,
    )


def dqn_updates(config) -> int:
    """Gradient updates of a DQN run (the unit of its ages)."""
    return (config.total_steps - config.learning_starts) // config.train_every


def sac_config(budget: Budget, critic: str = "mlp"):
    from agents import sac

    return dataclasses.replace(
        sac.PRESETS["pendulum"],
        total_steps=budget.pendulum_env_steps,
        buffer_size=budget.pendulum_env_steps,
        target="tracker",
        critic=critic,
        eval_episodes=budget.eval_episodes,
    )


def td3_config(budget: Budget, delay: int):
    from agents import td3

    return dataclasses.replace(
        td3.PRESETS["pendulum"],
        total_steps=budget.pendulum_env_steps,
        buffer_size=budget.pendulum_env_steps,
        policy_delay=delay,
        eval_episodes=budget.eval_episodes,
    )


def pendulum_updates(config) -> int:
    return config.total_steps - config.learning_starts


# --------------------------------------------------------------------------- programs


def _even(cells: list[common.Cell], extra: common.Cell) -> list[common.Cell]:
    """`cells`, with `extra` when their number is odd: an even grid splits over two devices
    whatever the number of seeds."""
    return cells + [extra] if len(cells) % 2 else cells


def _age_cells(mechanisms, age_list, updates: int, prefix: str = "") -> list[common.Cell]:
    """The age cells of `age_list` up to a tenth of the run; when their number is odd, one
    more EMA cell at the next age of the grid."""
    kept = [a for a in age_list if a in common.ages(updates)]
    cells = common.age_cells(mechanisms, kept, *FIELDS, prefix=prefix)
    longer = [a for a in common.AGE_GRID if a > max(kept)]
    if len(cells) % 2 and longer:
        cells += common.age_cells(("ema",), [longer[0]], *FIELDS, prefix=prefix)
    return cells


def _program(name, algorithm, task, module, config, cells, **kw):
    iterations = config.total_steps // config.num_envs
    return common.Program(
        name=name,
        field="rl",
        algorithm=algorithm,
        task=task,
        module=module,
        config=config,
        iterations=iterations,
        cells=tuple(cells),
        **kw,
    )


def _dqn_programs(budget: Budget) -> list[common.Program]:
    from agents import dqn

    config, normed = dqn_config(budget), dqn_config(budget, layer_norm=True)
    n = dqn_updates(config)
    return [
        _program(
            "dqn", "dqn", CARTPOLE, dqn, config, _age_cells(("hard", "ema"), budget.dqn_ages, n)
        ),
        _program(
            "dqn_layernorm",
            "dqn",
            CARTPOLE,
            dqn,
            normed,
            _age_cells(("ema",), budget.dqn_ages, n, prefix="layernorm_"),
        ),
    ]


def _minatar_program(budget: Budget) -> common.Program:
    from agents import dqn

    config = minatar_config(budget)
    cells = _age_cells(("hard", "ema"), budget.minatar_ages, dqn_updates(config))
    return _program("dqn_minatar", "dqn_minatar", MINATAR, dqn, config, cells)


def _scaling_program(budget: Budget, k: float) -> common.Program:
    from agents import dqn

    decay = common.tracker("ema", budget.scaling_age)[1]
    cells = [
        common.Cell(
            {"target_period": 1, "target_decay": d},
            {"mechanism": "ema", "age": d / (1 - d), "decay": d, "k": k, "variant": variant},
        )
        for variant, d in (("rule", decay**k), ("control", decay))
    ]
    return _program(f"dqn_k{k:g}", "dqn", CARTPOLE, dqn, dqn_config(budget, k=k), cells)


def _sac_programs(budget: Budget) -> list[common.Program]:
    from agents import sac

    config, cross = sac_config(budget), sac_config(budget, "crossq")
    n = pendulum_updates(config)
    return [
        _program(
            "sac",
            "sac",
            PENDULUM,
            sac,
            config,
            _age_cells(("hard", "ema"), budget.pendulum_ages, n),
        ),
        _program(
            "sac_crossq",
            "sac",
            PENDULUM,
            sac,
            cross,
            _age_cells(("ema",), budget.pendulum_ages, n, prefix="crossq_"),
        ),
    ]


def _td3_programs(budget: Budget) -> list[common.Program]:
    from agents import td3

    return [
        _program(
            f"td3_d{d}",
            "td3",
            PENDULUM,
            td3,
            td3_config(budget, d),
            [common.Cell({}, {"mechanism": "policy_delay", "delay": d, "setting": f"d = {d}"})],
        )
        for d in budget.delays
    ]


def programs(quick: bool) -> list[common.Program]:
    budget = QUICK if quick else FULL
    return (
        _dqn_programs(budget)
        + [_scaling_program(budget, k) for k in budget.scaling_ks]
        + [_minatar_program(budget)]
        + _sac_programs(budget)
        + _td3_programs(budget)
    )


# --------------------------------------------------------------------------- rows


def _run_updates(program: common.Program) -> int:
    if program.algorithm in ("dqn", "dqn_minatar"):
        return dqn_updates(program.config)
    return pendulum_updates(program.config)


def rows(program: common.Program, results: dict, out_dir: str) -> list[dict]:
    cells, seeds = len(program.cells), len(results["seeds"])
    score = common.cell_values(results, "return")
    initial = common.initial_values(out_dir, "return", cells, seeds)
    lag = common.cell_values(results, "lag", "final_train")
    diverged = np.asarray(results["diverged_at_iteration"]) >= 0
    x, curve = common.learning_curve(out_dir, "return", cells, seeds)
    ceiling = CARTPOLE_MAX if program.task == CARTPOLE else None
    out = []
    for c, cell in enumerate(program.cells):
        labels = dict(cell.labels)
        if "k" in labels:
            labels["axis"] = "scaling"
        elif "delay" in labels:
            labels.update(axis="partner", ratio=float(labels["delay"]))
        for s, seed in enumerate(results["seeds"]):
            out.append(
                common.row(
                    **{**common.identity(program, cell, seed), **labels},
                    score=score[c, s],
                    score_name="return",
                    normalized=None,
                    failed=bool(diverged[c, s] or not np.isfinite(score[c, s])),
                    lag=lag[c, s],
                    auc=None,
                    untrained=initial[c, s],
                    ceiling=ceiling,
                    curve_x=x.tolist(),
                    curve=curve[:, c, s].tolist(),
                    run_updates=_run_updates(program),
                    learning_rate=_learning_rate(program.config),
                )
            )
    return out + _scaling_reference(program, out)


def _learning_rate(config) -> float:
    return float(getattr(config, "learning_rate", None) or config.critic_learning_rate)


def _scaling_reference(program: common.Program, age_rows: list[dict]) -> list[dict]:
    """DQN's EMA cell at the scaling rule's age, again as the k = 1 point of that axis."""
    if program.name != "dqn":
        return []
    return common.scaling_reference(age_rows, budget_of(program).scaling_age)


def budget_of(program: common.Program) -> Budget:
    """The budget (quick or full) a DQN or Pendulum program was made with, by its length."""
    steps = program.config.total_steps
    for budget in (QUICK, FULL):
        if steps in (budget.dqn_env_steps, budget.pendulum_env_steps, budget.minatar_frames):
            return budget
    raise ValueError(f"{program.name}: {steps} env steps is neither budget's run length")


def measured_ceiling(rows: list[dict], task: str) -> float | None:
    """The best IQM return over the cells (program, mechanism, age, variant) of `task`."""
    cells: dict[tuple, list[float]] = {}
    for r in rows:
        if r["task"] == task and r["score"] is not None and r.get("axis") != "scaling":
            key = (r["program"], r["mechanism"], r["age"], r.get("variant"))
            cells.setdefault(key, []).append(r["score"])
    if not cells:
        return None
    return max(float(stats.iqm(np.asarray(v))) for v in cells.values())


def floors(rows: list[dict]) -> dict[str, float]:
    """Per task, the mean return of the untrained networks over every run of the study (one
    untrained policy's return varies a lot: a random CartPole network may balance for 200
    steps or fall after 9)."""
    values: dict[str, list[float]] = {}
    for r in rows:
        if r.get("untrained") is not None and r.get("variant") != "reference":
            values.setdefault(r["task"], []).append(r["untrained"])
    return {task: float(np.mean(v)) for task, v in values.items()}


def ceilings(rows: list[dict]) -> list[dict]:
    """Sets every row's floor (`floors`) and the ceiling of the `MEASURED_CEILING` tasks'
    rows, then marks as failed every run whose normalized score is below `FAIL_BELOW`."""
    best = {task: measured_ceiling(rows, task) for task in MEASURED_CEILING}
    floor_of = floors(rows)
    out = []
    for r in rows:
        r = dict(r, floor=floor_of.get(r["task"]))
        if r["task"] in best:
            r["ceiling"] = best[r["task"]]
        floor, ceiling, score = r.get("floor"), r.get("ceiling"), r["score"]
        if None not in (floor, ceiling, score) and ceiling != floor:
            r["failed"] = bool(r["failed"] or (score - floor) / (ceiling - floor) < FAIL_BELOW)
        out.append(r)
    return out
