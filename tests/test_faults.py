"""Faults a run survives: a corrupt newest checkpoint, and a run made longer on resume."""

import glob
import os
import types

import numpy as np
import pytest
from flax import struct

from benchmarks import harness, toy
from benchmarks.harness import checkpoints


def run(out_dir, **kw):
    kw.setdefault("config", toy.Config())
    kw.setdefault("iterations", 60)
    kw.setdefault("segment_length", 10)
    kw.setdefault("checkpoint_every", 2)
    algo = kw.pop("algo", toy)
    return harness.run(
        algo, kw.pop("config"), seeds=2, out_dir=out_dir, progress=False, plot=False, **kw
    )


def steps(out_dir) -> list[int]:
    return sorted(int(p) for p in os.listdir(out_dir / "checkpoints") if p.isdigit())


def truncate_data_file(out_dir, step: int) -> str:
    """Cuts the largest array data file of checkpoint `step` to half its size."""
    files = glob.glob(str(out_dir / "checkpoints" / str(step) / "state" / "d" / "*"))
    path = max(files, key=os.path.getsize)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    return path


def untimed(out_dir):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in harness.read_log(out_dir)]


def test_a_corrupt_newest_checkpoint_is_skipped_and_no_good_one_is_lost(tmp_path, capsys):
    full = run(tmp_path / "full")
    out = tmp_path / "run"
    run(out, stop_after_segments=4)
    assert steps(out) == [2, 4]
    truncate_data_file(out, 4)

    # one more segment: the bad checkpoint 4 must not count as one of the two kept
    part = run(out, checkpoint_every=1, stop_after_segments=1)
    err = capsys.readouterr().err
    assert part.status == "interrupted" and part.results["iterations"] == 30
    line = next(x for x in err.splitlines() if "skipped checkpoint 4" in x)
    assert "does not restore (ValueError" in line and "resuming from checkpoint 2" in line
    assert steps(out) == [2, 3]
    assert os.listdir(out / checkpoints.SKIPPED) == ["4"]

    resumed = run(out)
    assert resumed.status == "completed"
    np.testing.assert_array_equal(resumed.states.online, full.states.online)
    np.testing.assert_array_equal(resumed.states.target, full.states.target)
    assert untimed(out) == untimed(tmp_path / "full")


def test_when_no_checkpoint_restores_nothing_is_moved_and_the_run_stops(tmp_path):
    run(tmp_path, iterations=20, checkpoint_every=1)
    for step in (1, 2):
        truncate_data_file(tmp_path, step)
    with pytest.raises(RuntimeError, match="no checkpoint of .* restores .*checkpoint 2: .*1: "):
        run(tmp_path, iterations=20, checkpoint_every=1)
    assert steps(tmp_path) == [1, 2] and not (tmp_path / checkpoints.SKIPPED).exists()


def test_a_run_extended_after_a_short_last_segment_goes_on_in_whole_segments(tmp_path):
    run(tmp_path / "a", iterations=25)  # segments 10, 10, 5
    extended = run(tmp_path / "a", iterations=45)  # then 10, 10
    straight = run(tmp_path / "b", iterations=45)  # 10, 10, 10, 10, 5
    assert [r["iteration"] for r in harness.read_log(tmp_path / "a")] == [0, 10, 20, 25, 35, 45]
    np.testing.assert_array_equal(extended.states.online, straight.states.online)
    with pytest.raises(ValueError, match="past the end of this run of 30 iterations"):
        run(tmp_path / "a", iterations=30)


@struct.dataclass
class LongToyConfig(toy.Config):
    total_steps: int = struct.field(pytree_node=False, default=100)


def long_toy(run_length_fields: tuple[str, ...]) -> types.ModuleType:
    """The toy with a `total_steps` field that changes nothing, declared as `given`."""
    module = types.ModuleType("long_toy")
    for member in ("init", "step", "evaluate", "units"):
        setattr(module, member, getattr(toy, member))
    module.Config, module.PRESETS = LongToyConfig, {"smoke": LongToyConfig()}
    module.RUN_LENGTH_FIELDS = run_length_fields
    return module


def test_run_length_fields_may_grow_on_resume_and_other_fields_are_refused(tmp_path):
    algo = long_toy(("total_steps",))
    run(tmp_path / "a", algo=algo, config=LongToyConfig(total_steps=20), iterations=20)
    longer = LongToyConfig(total_steps=40)
    extended = run(tmp_path / "a", algo=algo, config=longer, iterations=40)
    assert extended.results["iterations_this_call"] == 20
    assert extended.results["config"]["total_steps"] == 40
    straight = run(tmp_path / "b", algo=algo, config=longer, iterations=40)
    np.testing.assert_array_equal(extended.states.online, straight.states.online)

    fixed = long_toy(())
    run(tmp_path / "c", algo=fixed, config=LongToyConfig(total_steps=20), iterations=20)
    with pytest.raises(checkpoints.Incompatible) as refused:
        run(tmp_path / "c", algo=fixed, config=longer, iterations=40)
    message = str(refused.value)
    assert "\n" not in message
    assert "holds another run: total_steps: 20 -> 40 (total_steps is not one of" in message
    assert "RUN_LENGTH_FIELDS" in message
