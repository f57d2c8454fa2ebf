"""The cross-field study: the runner, the study's config fields, the report on made-up rows."""

import dataclasses
import json
import math
import os
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stabilizers
from benchmarks import harness, toy
from benchmarks.cross_field import common, report, summary

# --------------------------------------------------------------------------- the runner


def _toy_program(iterations=40):
    config = toy.Config(target="periodic_ema", dim=4, batch_size=2)
    cells = common.age_cells(("hard", "ema"), [0, 1, 3], "copy_every", "decay")
    return common.Program(
        name="toy",
        field="rl",
        algorithm="toy",
        task="fixed point",
        module=toy,
        config=config,
        iterations=iterations,
        cells=tuple(cells),
        segments=4,
        evaluations=2,
    )


def _toy_rows(program, results, out_dir):
    cells, seeds = len(program.cells), len(results["seeds"])
    error = common.cell_values(results, "error")
    initial = common.initial_values(out_dir, "error", cells, seeds)
    x, curve = common.learning_curve(out_dir, "error", cells, seeds)
    return [
        common.row(
            **common.identity(program, cell, seed),
            score=-error[c, s],
            score_name="-error",
            normalized=None,
            failed=False,
            lag=None,
            auc=None,
            floor=-initial[c, s],
            ceiling=0.0,
            curve_x=x.tolist(),
            curve=(-curve[:, c, s]).tolist(),
            run_updates=program.iterations,
        )
        for c, cell in enumerate(program.cells)
        for s, seed in enumerate(results["seeds"])
    ]


FIELD = types.SimpleNamespace(programs=lambda quick: [_toy_program()], rows=_toy_rows)


def test_runner_writes_rows_with_the_schema_and_resume_skips_finished_programs(tmp_path):
    written = []
    rows = common.run_study(
        {"rl": FIELD},
        quick=True,
        seeds=2,
        runs_dir=str(tmp_path),
        write_rows=lambda r, p: written.append((r, p)),
        echo=lambda msg: None,
    )
    assert len(rows) == 5 * 2 and written[-1][0] == rows
    for r in rows:
        assert set(common.ROW_KEYS) <= set(r) and r["axis"] == "age"
        assert r["normalized"] == pytest.approx((r["score"] - r["floor"]) / -r["floor"])
        assert r["auc"] is not None and math.isfinite(r["auc"])
    assert {(r["mechanism"], r["age"]) for r in rows} == {
        ("none", 0.0),
        ("hard", 1.0),
        ("hard", 3.0),
        ("ema", 1.0),
        ("ema", 3.0),
    }
    programs = written[-1][1]
    assert programs["rl/toy"]["cells"] == 5 and programs["rl/toy"]["calls"] == 1
    from benchmarks import provenance

    assert programs["rl/toy"]["commit"] == provenance.provenance(provenance.now())["commit"]

    # a second study reads the finished program back: no harness call, same rows
    def refuse(*args, **kwargs):
        raise AssertionError("a finished program was trained again")

    original = harness.run
    harness.run = refuse
    try:
        again = common.run_study(
            {"rl": FIELD},
            quick=True,
            seeds=2,
            runs_dir=str(tmp_path),
            write_rows=lambda r, p: None,
            echo=lambda msg: None,
        )
    finally:
        harness.run = original
    assert again == rows


def test_cells_run_what_separate_runs_of_each_cell_run():
    program = _toy_program(iterations=8)
    zipped = harness.run(
        common.CellAlgorithm(toy),
        program.harness_config(),
        iterations=8,
        seeds=1,
        sweep={"cell": list(range(len(program.cells)))},
        progress=False,
        plot=False,
    )
    for c, cell in enumerate(program.cells):
        alone = harness.run(
            toy,
            dataclasses.replace(program.config, **cell.values),
            iterations=8,
            progress=False,
            plot=False,
        )
        np.testing.assert_allclose(
            zipped.results["final"]["error"][c], alone.results["final"]["error"][0], rtol=1e-6
        )


def test_program_checks_its_cells_and_segments():
    with pytest.raises(ValueError, match="segments"):
        dataclasses.replace(_toy_program(), iterations=41)
    with pytest.raises(ValueError, match="same fields"):
        dataclasses.replace(
            _toy_program(), cells=(common.Cell({"decay": 0.5}, {}), common.Cell({}, {}))
        )


# --------------------------------------------------------------------------- config fields


def _ct(**overrides):
    from generative import consistency

    return dataclasses.replace(consistency.PRESETS["smoke"], **overrides)


def _ct_steps(config, n):
    from generative import consistency

    state = consistency.init(jax.random.key(0), config)
    step = jax.jit(consistency.step)  # the leaves traced: one compile per static layout
    out = [state]
    for _ in range(n):
        state, _ = step(state, config)
        out.append(state)
    return out


def test_ct_periodic_teacher_is_the_schedule_at_every_1_and_periodic_math_otherwise():
    from generative import consistency

    default = _ct_steps(_ct(), 2)
    same = _ct_steps(_ct(teacher_tracker="periodic"), 2)
    chex.assert_trees_all_close(default[-1].target, same[-1].target, rtol=1e-6)
    hard = _ct_steps(_ct(teacher_tracker="periodic", teacher_every=2, teacher_decay=0.0), 2)
    chex.assert_trees_all_equal(hard[1].target, hard[0].target)  # not due
    chex.assert_trees_all_equal(hard[2].target, hard[2].params)  # copied
    half = _ct_steps(_ct(teacher_tracker="periodic", teacher_decay=0.5), 1)
    want = jax.tree.map(lambda t, o: 0.5 * t + 0.5 * o, half[0].target, half[1].params)
    chex.assert_trees_all_close(half[1].target, want, rtol=1e-6)
    decay = consistency.teacher_decay_at(_ct(teacher_tracker="periodic", teacher_decay=0.5), 3)
    assert float(decay) == 0.5


def test_ct_layer_norm_adds_one_norm_per_block_and_only_when_asked():
    from generative import consistency

    def norms(config):
        params = consistency.init(jax.random.key(0), config).params
        return sorted(k for k in params if k.startswith("LayerNorm"))

    assert len(norms(_ct(layer_norm=True))) == len(norms(_ct())) + _ct().depth
    with pytest.raises(ValueError, match="2-D"):
        consistency.init(jax.random.key(0), _ct(layer_norm=True, data="digits"))


def test_byol_without_a_target_has_the_online_params_as_target():
    from representation import byol

    config = dataclasses.replace(
        byol.PRESETS["smoke"], target_tracker="periodic", target_decay=0.0, total_steps=32 * 2
    )
    state = jax.jit(byol.init, static_argnums=1)(jax.random.key(0), config)
    state, metrics = jax.jit(byol.step, static_argnums=1)(state, config)
    online = {"encoder": state.online["encoder"], "projector": state.online["projector"]}
    chex.assert_trees_all_equal(state.target, online)
    assert float(metrics["lag"]) == 0.0 and float(metrics["momentum"]) == 0.0


def test_cells_pick_integer_periods_and_float_decays():
    cells = common.Cells(
        inner=toy.Config(target="periodic_ema"), table=(("copy_every", (1, 3)), ("decay", (0, 0.5)))
    )
    picked = dataclasses.replace(cells, cell=1).pick()
    assert picked.copy_every.dtype == jnp.int32 and int(picked.copy_every) == 3
    assert picked.decay.dtype == jnp.float32 and float(picked.decay) == 0.5
    assert float(stabilizers.mean_age(*common.tracker("ema", 3))) == pytest.approx(3)


# --------------------------------------------------------------------------- the report


def _rows(rng, rl=True):
    rows = []

    def add(field, algorithm, mechanism, age, mean, task="t", **extra):
        for seed in range(3):
            score = mean + 0.03 * rng.standard_normal()
            values = dict(
                field=field,
                algorithm=algorithm,
                task=task,
                mechanism=mechanism,
                age=age,
                seed=seed,
                score=score,
                score_name="s",
                normalized=score,
                failed=score < 0.1,
                lag=0.0,
                auc=score,
                program=f"{algorithm}_{extra.get('setting', '')}",
                variant="base",
                floor=0.0,
                ceiling=1.0,
                run_updates=1000,
                learning_rate=1e-3,
            )
            rows.append(common.row(**{**values, **extra}))

    for field, algorithm in (("generative", "ct"), ("representation", "byol")):
        add(field, algorithm, "none", 0.0, 0.5)
        for age, mean in ((1, 0.6), (3, 0.8), (10, 0.7), (30, 0.2)):
            add(field, algorithm, "hard", float(age), mean)
            add(field, algorithm, "ema", float(age), mean + 0.02)
        add(field, algorithm, "schedule", 400.0, 0.3)
    add("generative", "ct", "layernorm", 0.0, 0.75)
    add("generative", "ct", "ema", 3.0, 0.5, variant="short", run_updates=250)
    add("generative", "ct", "ema", 1.0, 0.6, variant="short", run_updates=250)
    for cap, ratio, mean in ((0, 1.0, 0.6), (3, 2.5, 0.7), (30, 30.0, 0.95)):
        partner = dict(axis="partner", ratio=ratio, setting=f"cap {cap}")
        add("generative", "vae", "inner_loop", None, mean, **partner)
    scaling = dict(axis="scaling", variant="reference", k=1.0)
    add("representation", "byol", "ema", 30.0, 0.5, **scaling)
    for k, rule, control in ((0.25, 0.5, 0.3), (4.0, 0.48, 0.2)):
        add("representation", "byol", "ema", 30.0, rule, **{**scaling, "k": k, "variant": "rule"})
        scaled = {**scaling, "k": k, "variant": "control"}
        add("representation", "byol", "ema", 30.0, control, **scaled)
    add("representation", "supervised", "supervised", None, 1.0, axis="ceiling")
    if rl:
        add("rl", "dqn", "none", 0.0, 0.1, task="CartPole-v1")
        add("rl", "dqn", "none", 0.0, 0.2, task="Breakout-MinAtar")
        add("rl", "dqn", "hard", 10.0, 0.9, task="CartPole-v1")
        add("rl", "dqn", "hard", 10.0, 0.7, task="Breakout-MinAtar")
        for d, mean in ((1, 0.5), (2, 0.8), (8, 0.6)):
            add("rl", "td3", "delay", None, mean, axis="partner", ratio=float(d), setting=f"d={d}")
    return rows


@pytest.mark.parametrize("rl", [True, False])
def test_report_writes_figures_and_answers_from_rows(tmp_path, rl):
    rows = _rows(np.random.default_rng(0), rl=rl)
    source = tmp_path / "rows.json"
    common.write(str(source), rows, {"commit": "abc"}, study={"quick": True, "seeds": 3})
    args = types.SimpleNamespace(
        source=str(source), out=str(tmp_path), theory=str(tmp_path / "theory.json")
    )
    assert report.main(args) == 0
    for name in ("panels", "summary", "partner", "scaling"):
        assert os.path.getsize(tmp_path / report.FIGURES[name]) > 10_000
    text = (tmp_path / "cross_field.md").read_text()
    for question, _ in report.ANSWERS:
        assert question in text
    assert "an interior best age" in text and "LayerNorm" in text
    assert ("seen from two sides" in text) == rl and ("td3 are absent" in text) == (not rl)
    assert "the control departs from it at 2 of 2" in text


def test_report_runs_on_one_field_alone(tmp_path):
    rows = [r for r in _rows(np.random.default_rng(1)) if r["field"] == "generative"]
    source = tmp_path / "rows.json"
    common.write(str(source), rows, {})
    args = types.SimpleNamespace(
        source=str(source), out=str(tmp_path), theory=str(tmp_path / "theory.json")
    )
    assert report.main(args) == 0
    assert not os.path.exists(tmp_path / report.FIGURES["scaling"])
    assert "No scaling rows." in (tmp_path / "cross_field.md").read_text()


def test_estimates_pool_tasks_and_count_missing_scores_as_the_floor():
    rows = [
        {"task": t, "normalized": v, "failed": v is None}
        for t, v in (("a", 1.0), ("a", None), ("b", 0.5), ("b", 0.5))
    ]
    est = summary.estimate(rows)
    assert est.value == pytest.approx(0.5) and est.failures == 1 and est.statistic == "IQM"
    assert est.low <= est.value <= est.high
    assert json.dumps(est._asdict())


def test_the_report_names_the_programs_a_rows_file_lacks():
    expected = report.expected_programs(quick=True)
    assert {"rl/dqn", "generative/ct", "representation/byol"} <= set(expected)
    partial = {"programs": {name: {} for name in expected if not name.startswith("rl/")}}
    line = " ".join(report.completeness(partial, expected))
    rl = [name for name in expected if name.startswith("rl/")]
    assert f"{len(rl)} of the study's {len(expected)} programs" in line
    assert all(name in line for name in rl) and "generative/ct" not in line
    whole = {"programs": {name: {} for name in expected}}
    assert "Every program" in report.completeness(whole, expected)[0]


def test_report_reads_the_theory_results_beside_the_rows(tmp_path):
    from benchmarks.cross_field import theory
    from benchmarks.cross_field.__main__ import theory_file

    rng = np.random.default_rng(2)
    problems = {}
    for name, problem in theory.PROBLEMS.items():
        shape = (len(problem.lrs), len(problem.ages) + 1, len(problem.ages) + 1)
        predicted = rng.choice([-1, 0, 1], size=shape)
        measured = predicted.copy()
        measured[-1, 0, 1:3] = -1  # two cells of the largest rate diverge against the theory
        predicted[-1, 0, 1:3] = 1
        problems[name] = {
            "iterations": problem.iterations,
            "seeds": 3,
            "learning_rate": list(problem.lrs),
            "measured": measured.tolist(),
            "predicted": predicted.tolist(),
            "radius": rng.uniform(0.9, 0.99, shape).tolist(),
            "agreement": theory.agreement(measured, predicted),
        }
    rows = [r for r in _rows(np.random.default_rng(1)) if r["field"] == "generative"]
    source = tmp_path / "rows.json"
    common.write(str(source), rows, {})
    assert theory_file(str(source)) == str(tmp_path / "rows_theory.json")
    with open(theory_file(str(source)), "w") as f:
        json.dump({"problems": problems}, f)
    args = types.SimpleNamespace(source=str(source), out=str(tmp_path), theory=None)
    assert report.main(args) == 0
    assert os.path.getsize(tmp_path / report.FIGURES["theory"]) > 10_000
    text = (tmp_path / "cross_field.md").read_text()
    for p in problems.values():
        m, q = np.asarray(p["measured"]), np.asarray(p["predicted"])
        a = p["agreement"]
        assert a["both_decided"] == int(((m != 0) & (q != 0)).sum())
        assert a["agree"] == a["both_decided"] - 2
        assert f"agree at {a['agree']} of the {a['both_decided']} cells" in text
    assert text.count("they differ at 2 at learning rate") == 2
    assert "predicted converges, measured diverges" in text


@pytest.mark.parametrize("quick", [True, False], ids=["quick", "full"])
def test_byol_scaling_reference_is_the_ema_cell_at_its_own_budgets_age(monkeypatch, quick):
    from benchmarks.cross_field import representation

    budget = representation.QUICK if quick else representation.FULL
    seeds = 2
    monkeypatch.setattr(common, "initial_values", lambda d, m, c, s: np.full((c, s), 0.1))
    monkeypatch.setattr(
        common, "learning_curve", lambda d, m, c, s: (np.array([0.0, 1.0]), np.ones((2, c, s)))
    )
    byol = next(p for p in representation.programs(quick) if p.name == "byol")
    cells = len(byol.cells)
    ones = np.ones((cells, seeds))
    results = {
        "seeds": list(range(seeds)),
        "final": {"linear_probe": (0.5 * ones).tolist()},
        "final_train": {"lag": (0 * ones).tolist(), "projection_std": ones.tolist()},
        "diverged_at_iteration": (-ones).astype(int).tolist(),
    }
    out = representation.rows(byol, results, "byol")
    reference = [r for r in out if r["axis"] == "scaling"]
    assert len(reference) == seeds  # one cell, not one per budget's age
    assert all(r["age"] == budget.scaling_age and r["mechanism"] == "ema" for r in reference)


def test_partner_answer_counts_failures_and_tells_opposite_directions_apart():
    rng = np.random.default_rng(3)
    rows = []
    # TD3: a slower actor hurts the score; the VAE: a faster encoder ends the collapse while
    # the score stays within its interval
    points = [("td3", 1, 0.9, False), ("td3", 8, 0.5, False)]
    points += [("vae", 1, 0.9, True), ("vae", 30, 0.9, False)]
    for algorithm, ratio, mean, failed in points:
        for seed in range(4):
            score = mean + 0.01 * rng.standard_normal()
            rows.append(
                common.row(
                    field="rl" if algorithm == "td3" else "generative",
                    algorithm=algorithm,
                    task="t",
                    mechanism="delay",
                    age=None,
                    seed=seed,
                    score=score,
                    score_name="s",
                    normalized=score,
                    failed=failed,
                    lag=0.0,
                    auc=score,
                    axis="partner",
                    ratio=float(ratio),
                    setting=f"r {ratio}",
                )
            )
    lines = report.answer_partner(rows)
    assert lines[0].endswith("more updates for the lagging partner hurts.")
    assert "4/4 failed" in lines[1] and lines[1].endswith("lagging partner helps.")
    assert lines[-1].endswith("hurts in TD3 and helps in the VAE: not the same knob here.")


def test_only_reruns_its_programs_and_keeps_the_rest_of_the_field(tmp_path, monkeypatch):
    from benchmarks.cross_field import __main__ as cross_field

    def two_programs(quick):
        return [_toy_program(), dataclasses.replace(_toy_program(), name="toy_b")]

    field = types.SimpleNamespace(programs=two_programs, rows=_toy_rows)
    monkeypatch.setattr(
        cross_field,
        "field_modules",
        lambda names, only=None: {"rl": cross_field.Only(field, only) if only else field},
    )
    rows_file = tmp_path / "rows.json"
    argv = ["run", "--quick", "--seeds", "2", "--fields", "rl", "--json", str(rows_file)]
    argv += ["--out", str(tmp_path / "runs")]
    assert cross_field.main(argv) == 0
    first = common.read(str(rows_file))
    assert {r["program"] for r in first["rows"]} == {"toy", "toy_b"}
    assert set(first["programs"]) == {"rl/toy", "rl/toy_b"}
    # --only toy_b: toy's rows and summary stay; toy_b's are written again, the same
    assert cross_field.main([*argv, "--only", "toy_b"]) == 0
    again = common.read(str(rows_file))
    assert set(again["programs"]) == {"rl/toy", "rl/toy_b"}
    key = lambda r: (r["program"], r["mechanism"], r["age"], r["seed"])  # noqa: E731
    assert sorted(map(key, again["rows"])) == sorted(map(key, first["rows"]))


def test_theory_lines_note_every_disagreement_and_agreeing_problems_thresholds(tmp_path):
    from benchmarks.cross_field import theory_report

    measured = np.array([[1, -1], [-1, 1]])  # lr 0.1: one diverges; lr 1: one converges
    predicted = np.array([[1, 1], [1, -1]])
    agreeing = np.array([[1, -1], [1, 1]])
    common_keys = {"iterations": 10, "seeds": 3, "learning_rate": [0.1, 1.0]}
    problems = {
        "a": {
            **common_keys,
            "measured": measured.tolist(),
            "predicted": predicted.tolist(),
            "radius": np.full((2, 2), 0.99).tolist(),
            "agreement": {"cells": 4, "both_decided": 4, "agree": 1},
        },
        "b": {
            **common_keys,
            "measured": agreeing.tolist(),
            "predicted": agreeing.tolist(),
            "radius": np.full((2, 2), 0.5).tolist(),
            "agreement": {"cells": 4, "both_decided": 4, "agree": 4},
            "stable_from_age": {"ema": [5.0, 0.5]},
        },
    }
    path = tmp_path / "theory.json"
    path.write_text(json.dumps({"problems": problems}))
    text = "\n".join(theory_report.lines(str(path)))
    # the expected-update note comes from lr 0.1's cell though lr 1's is the other way round
    assert "predicted converges, measured diverges" in text and "On a the prediction" in text
    assert "they differ" not in text.split("\n")[-1]
    assert "b, ema: the expected iteration is stable from learning rate x age = 0.5 to 0.5" in text
