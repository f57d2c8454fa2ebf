"""The harness, driven by the toy algorithm: grids, resume, sharding, non-finite stops."""

import json
import os
import re
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest

from benchmarks import harness, toy
from benchmarks.harness import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(**kw):
    kw.setdefault("progress", False)
    kw.setdefault("plot", False)
    return harness.run(toy, kw.pop("config", toy.Config()), **kw)


def untimed(log):
    """A log without its wall times (each segment's `seconds`)."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in log]


def test_toy_run_writes_results_log_curve_and_learns(tmp_path):
    res = run(
        iterations=300, seeds=3, segment_length=30, out_dir=tmp_path, plot=True, checkpoint_every=4
    )
    assert res.status == "completed"
    r = json.loads((tmp_path / "results.json").read_text())
    for key in [
        "config",
        "seeds",
        "sweep",
        "grid",
        "final",
        "final_train",
        "compile_seconds",
        "run_seconds",
        "samples_per_second",
        "iterations",
        "status",
    ]:
        assert key in r, key
    assert r["iterations"] == 300 and r["samples"] == 300 * 32
    assert r["seeds"] == [0, 1, 2]
    assert np.shape(r["final"]["error"]) == (1, 3)
    assert max(r["final"]["error"][0]) < 0.05  # converged to the fixed point
    log = harness.read_log(tmp_path)
    assert log[0]["iteration"] == 0 and "eval" in log[0]
    assert [rec["iteration"] for rec in log[1:]] == list(range(30, 301, 30))
    assert all(rec["seconds"] > 0 for rec in log[1:])  # each segment's run time
    assert log[0]["eval"]["error"][0] > 0.5  # the untrained baseline is far away
    assert (tmp_path / "curve.png").stat().st_size > 5000
    assert sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit())[-1] == 10


def test_seeds_differ_and_sweep_points_share_seed_streams():
    # After one iteration the online params depend on the init and the noise only (the
    # first target is the init itself), not on the decay.
    res = run(iterations=1, seeds=3, sweep={"decay": [0.5, 0.9]}, segment_length=1)
    online = np.asarray(res.states.online)  # [6, dim]: grid index p * 3 + s
    assert res.results["grid"][3] == {"decay": 0.9, "seed": 0}
    for s in range(3):  # the same seed at both sweep points: common random numbers
        np.testing.assert_array_equal(online[s], online[3 + s])
    for a, b in [(0, 1), (0, 2), (1, 2)]:  # different seeds differ
        assert not np.allclose(online[a], online[b])
    # and the seed's stream is jax.random.key(seed)
    state = toy.init(jax.random.key(1), toy.Config())
    state, _ = toy.step(state, toy.Config())
    np.testing.assert_allclose(online[1], state.online, rtol=1e-5, atol=1e-6)


def test_grid_point_equals_its_own_single_run():
    grid = run(
        iterations=40,
        seeds=2,
        seed=5,
        sweep={"decay": [0.3, 0.95], "noise": [0.0, 0.2]},
        segment_length=10,
    )
    assert len(grid.results["grid"]) == 8
    # grid index of (decay=0.95, noise=0.2, seed=6) is p=3, s=1 -> 7
    assert grid.results["grid"][7] == {"decay": 0.95, "noise": 0.2, "seed": 6}
    single = run(
        iterations=40, seeds=1, seed=6, segment_length=10, config=toy.Config(decay=0.95, noise=0.2)
    )
    np.testing.assert_allclose(
        np.asarray(grid.states.online)[7], np.asarray(single.states.online)[0], rtol=1e-5, atol=1e-6
    )


def test_resume_is_bit_identical(tmp_path):
    full = run(
        iterations=120,
        seeds=2,
        sweep={"decay": [0.5, 0.9]},
        segment_length=10,
        out_dir=tmp_path / "full",
        checkpoint_every=3,
    )
    part = run(
        iterations=120,
        seeds=2,
        sweep={"decay": [0.5, 0.9]},
        segment_length=10,
        out_dir=tmp_path / "killed",
        checkpoint_every=3,
        stop_after_segments=5,
    )
    assert part.status == "interrupted"
    # a checkpoint is at segment 5 (written because the call stopped there); resume from it
    resumed = run(
        iterations=120,
        seeds=2,
        sweep={"decay": [0.5, 0.9]},
        segment_length=10,
        out_dir=tmp_path / "killed",
        checkpoint_every=3,
    )
    assert resumed.status == "completed"
    chex.assert_trees_all_equal(
        jax.tree.map(np.asarray, jax.random.key_data(full.states.key)),
        jax.tree.map(np.asarray, jax.random.key_data(resumed.states.key)),
    )
    for name in ("online", "target"):
        np.testing.assert_array_equal(getattr(full.states, name), getattr(resumed.states, name))
    log_full = harness.read_log(tmp_path / "full")
    log_resumed = harness.read_log(tmp_path / "killed")
    assert untimed(log_full) == untimed(log_resumed)


def test_resume_after_killed_process(tmp_path):
    """A process killed mid-run (no clean shutdown) resumes from its last checkpoint."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {ROOT!r})
        from benchmarks import harness, toy
        from benchmarks.harness import records
        orig = records.append_log
        def append(path, record):
            orig(path, record)
            if record.get("segment") == 7:
                os._exit(9)
        records.append_log = append
        harness.run(toy, toy.Config(), iterations=100, seeds=2, segment_length=10,
                    out_dir={str(tmp_path / "run")!r}, checkpoint_every=3,
                    progress=False, plot=False)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    resumed = run(
        iterations=100, seeds=2, segment_length=10, out_dir=tmp_path / "run", checkpoint_every=3
    )
    full = run(
        iterations=100, seeds=2, segment_length=10, out_dir=tmp_path / "full", checkpoint_every=3
    )
    np.testing.assert_array_equal(full.states.online, resumed.states.online)
    assert untimed(harness.read_log(tmp_path / "run")) == untimed(
        harness.read_log(tmp_path / "full")
    )


def test_resume_refuses_a_different_config(tmp_path):
    run(iterations=20, seeds=1, segment_length=10, out_dir=tmp_path)
    with pytest.raises(checkpoints.Incompatible, match="another run: decay: 0.9 -> 0.5;"):
        run(
            iterations=20,
            seeds=1,
            segment_length=10,
            out_dir=tmp_path,
            config=toy.Config(decay=0.5),
        )
    # resume=False starts over
    res = run(
        iterations=20,
        seeds=1,
        segment_length=10,
        out_dir=tmp_path,
        config=toy.Config(decay=0.5),
        resume=False,
    )
    assert res.status == "completed"


def test_resume_can_extend_a_finished_run(tmp_path):
    run(iterations=40, seeds=1, segment_length=10, out_dir=tmp_path / "a")
    extended = run(iterations=80, seeds=1, segment_length=10, out_dir=tmp_path / "a")
    straight = run(iterations=80, seeds=1, segment_length=10, out_dir=tmp_path / "b")
    np.testing.assert_array_equal(extended.states.online, straight.states.online)
    assert extended.results["iterations_this_call"] == 40


def test_nonfinite_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    cfg = toy.Config(learning_rate=2.5, target="none")  # |1 - 2 * 2.5| = 4 per step: diverges
    res = run(
        iterations=400, seeds=2, segment_length=10, out_dir=tmp_path, checkpoint_every=1, config=cfg
    )
    assert res.status == "nonfinite"
    err = capsys.readouterr().err
    assert "non-finite" in err and "seed 0" in err and "last good checkpoint" in err
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["status"] == "nonfinite"
    stopped_at = max(max(row) for row in r["diverged_at_iteration"])
    assert 0 < stopped_at < 400
    steps = sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit())
    assert steps and steps[-1] * 10 < stopped_at
    assert np.all(np.isfinite(np.asarray(res.states.online)))  # the last finite state


def test_nonfinite_continue_records_divergence_per_point():
    res = run(
        iterations=200,
        seeds=2,
        segment_length=10,
        on_nonfinite="continue",
        sweep={"decay": [0.0, 0.5]},
        config=toy.Config(learning_rate=1.2),
    )
    assert res.status == "completed"
    div = res.results["diverged_at_iteration"]
    assert all(v > 0 for v in div[0])  # no target: diverges
    assert all(v == -1 for v in div[1])  # EMA target: stable


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"sweep": {"dim": [4, 8]}}, "static"),
        ({"sweep": {"nope": [1.0]}}, "not a field"),
        ({"sweep": {"decay": []}}, "non-empty"),
        ({"seeds": 0}, "seeds"),
        ({"on_nonfinite": "ignore"}, "on_nonfinite"),
        ({"config": object()}, "Config"),
    ],
)
def test_bad_harness_arguments(kw, match):
    kw.setdefault("iterations", 10)
    with pytest.raises(ValueError, match=match):
        run(**kw)


@pytest.mark.parametrize("target", ["periodic", "ema"])
def test_seed_chunks_compute_the_same_numbers(target):
    """`seed_chunk` runs a device's grid points a chunk at a time: same numbers, bit for bit,
    shared counters (the periodic copy's `SharedCount`) included."""
    cfg = toy.Config(target=target, copy_every=7)
    kw = dict(config=cfg, iterations=40, segment_length=20, seeds=3, sweep={"decay": [0.5, 0.9]})
    whole = run(**kw)
    chunked = run(seed_chunk=2, **kw)
    assert whole.results["seed_chunk"] is None and chunked.results["seed_chunk"] == 2
    chex.assert_trees_all_equal(
        checkpoints.unwrap_keys(whole.states), checkpoints.unwrap_keys(chunked.states)
    )
    assert whole.results["final"] == chunked.results["final"]
    np.testing.assert_array_equal(
        np.asarray(whole.results["final_train"]["loss"]),
        np.asarray(chunked.results["final_train"]["loss"]),
    )


def test_seed_chunk_must_divide_the_points_per_device():
    with pytest.raises(ValueError, match="seed_chunk=4 does not divide the 6"):
        run(iterations=10, seeds=6, seed_chunk=4, max_devices=1)
    with pytest.raises(ValueError, match="seed_chunk"):
        run(iterations=10, seeds=2, seed_chunk=0)


SHARDED = textwrap.dedent("""
    import os, sys
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = flags + " --xla_force_host_platform_device_count=4"
    sys.path.insert(0, {root!r})
    import jax, numpy as np
    from benchmarks import harness, toy
    assert len(jax.devices()) == 4
    kw = dict(iterations=60, segment_length=20, progress=False, plot=False)
    outs = {{}}
    for n in (1, 4):
        res = harness.run(toy, toy.Config(), seeds=4, sweep={{"decay": [0.5, 0.9]}},
                          max_devices=n, **kw)
        assert res.results["devices"] == n, res.results["devices"]
        outs[f"grid_{{n}}"] = np.asarray(res.states.online)
    # what each of the 4 devices holds: 2 seeds of one decay, run alone on one device
    for d in range(4):
        decay, first = [0.5, 0.9][d // 2], 2 * (d % 2)
        res = harness.run(toy, toy.Config(), seeds=2, seed=first, sweep={{"decay": [decay]}},
                          max_devices=1, **kw)
        outs[f"shard_{{d}}"] = np.asarray(res.states.online)
    np.savez({out!r}, **outs)
""")


def test_sharded_grid_matches_one_device(tmp_path):
    """Each device runs exactly the program a one-device run of its shard would run.

    Bit for bit, the 4-device grid equals one-device runs of each device's 2 grid points.
    Against ONE device running all 8 points at once, XLA may pick another reduction order
    for the larger batch, so the two agree to float32 rounding (same as grid vs single run).
    """
    out = str(tmp_path / "out.npz")
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED.format(root=ROOT, out=out)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    o = np.load(out)
    shards = np.concatenate([o[f"shard_{d}"] for d in range(4)])
    np.testing.assert_array_equal(o["grid_4"], shards)
    np.testing.assert_allclose(o["grid_4"], o["grid_1"], rtol=1e-5, atol=1e-6)


def test_train_cli_static_and_float_sweeps(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.train",
            "--algo",
            "toy",
            "--seeds",
            "2",
            "--total-steps",
            "640",
            "--sweep",
            "decay=0.5,0.9",
            "--sweep",
            "target=ema,periodic",
            "--copy-every",
            "5",
            "--out",
            str(tmp_path),
            "--no-progress",
            "--segments",
            "4",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["static"] for s in summary] == [{"target": "ema"}, {"target": "periodic"}]
    r = json.loads((tmp_path / "target=periodic" / "results.json").read_text())
    assert r["config"]["copy_every"] == 5 and r["iterations"] == 20
    assert r["sweep"] == {"decay": [0.5, 0.9]}


def test_name_labels_results_and_checkpoints(tmp_path):
    res = run(iterations=20, segment_length=10, out_dir=tmp_path, name="toy-ema")
    assert res.results["algo"] == "toy-ema"
    with pytest.raises(ValueError, match="algo: 'toy-ema' -> 'toy'"):
        run(iterations=20, segment_length=10, out_dir=tmp_path)  # labelled "toy"


def test_train_cli_preset_then_flags(tmp_path, monkeypatch, capsys):
    from benchmarks import train

    monkeypatch.setitem(toy.PRESETS, "small", toy.Config(dim=4, learning_rate=0.5))
    argv = ["--algo", "toy", "--total-steps", "64", "--segments", "2", "--no-progress"]
    out = tmp_path / "run"
    assert train.main([*argv, "--preset", "small", "--noise", "0.2", "--out", str(out)]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["algo"] == "toy"
    assert (r["config"]["dim"], r["config"]["learning_rate"], r["config"]["noise"]) == (4, 0.5, 0.2)
    for args, says in [
        ([*argv, "--preset", "large"], r"--preset 'large': benchmarks.toy has .*'small'"),
        (["--algo", "toys"], "unknown algorithm 'toys'; registered: .*dqn.*toy"),
    ]:
        with pytest.raises(SystemExit) as stop:
            train.main(args)
        assert stop.value.code == 2
        assert re.search(says, capsys.readouterr().err)


def test_run_record_repeats_the_run_fields_and_provenance():
    results = {k: i for i, k in enumerate(harness.records.RUN_FIELDS)}
    results.update(final={"return": [[1.0]]}, status="completed", provenance={"commit": "abc"})
    record = harness.run_record(results)
    assert record == {
        **{k: results[k] for k in harness.records.RUN_FIELDS},
        "provenance": results["provenance"],
    }
    assert "final" not in record and "status" not in record
    with pytest.raises(KeyError, match="env_steps"):
        harness.run_record({k: v for k, v in results.items() if k != "env_steps"})
