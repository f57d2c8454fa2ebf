"""`python -m benchmarks.train` on bad input: one message naming the flag and the value, exit
status 2, no traceback, nothing written; and runs extended or refused on resume."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import harness, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (arguments, what the message says); tyro's messages (the algorithm's own flags) included
BAD = {
    "unknown algo": (["--algo", "dqm"], "--algo dqm: unknown algorithm 'dqm'; registered:"),
    "unknown preset": (["--algo", "toy", "--preset", "big"], "--preset 'big': benchmarks.toy"),
    "unknown env": (["--algo", "dqn", "--env", "Nope-v0"], "unknown environment 'Nope-v0'"),
    "dqn on Pendulum": (
        ["--algo", "dqn", "--env", "Pendulum-v1"],
        "--env Pendulum-v1: dqn needs a discrete action space",
    ),
    "td3 on CartPole": (
        ["--algo", "td3", "--env", "CartPole-v1"],
        "--env CartPole-v1: td3 needs a continuous (Box) action space",
    ),
    "ddpg (a td3 preset) on CartPole": (
        ["--algo", "ddpg", "--env", "CartPole-v1"],
        "--env CartPole-v1: ddpg needs a continuous (Box) action space",
    ),
    "no seeds": (["--algo", "toy", "--seeds", "0"], "argument --seeds: expected a positive"),
    "negative seeds": (["--algo", "toy", "--seeds", "-3"], "got '-3'"),
    "negative steps": (["--algo", "dqn", "--total-steps", "-5"], "argument --total-steps"),
    "zero steps": (["--algo", "dqn", "--total-steps", "0"], "argument --total-steps"),
    "sweep not a number": (["--algo", "dqn", "--sweep", "tau=abc"], "--sweep tau=abc: tau takes"),
    "sweep unknown field": (["--algo", "dqn", "--sweep", "taus=0.1"], "has no field 'taus'"),
    "sweep bad choice": (
        ["--algo", "dqn", "--sweep", "target=periodic,polyak"],
        "target is one of 'periodic', 'ema', 'none', 'tracker'; got 'polyak'",
    ),
    "sweep bad count": (["--algo", "dqn", "--sweep", "num_envs=4,x"], "num_envs takes an integer"),
    "bad choice": (["--algo", "dqn", "--target", "polyak"], "invalid choice 'polyak'"),
    "bad type": (["--algo", "toy", "--learning-rate", "abc"], "--learning-rate"),
    "no segments": (["--algo", "toy", "--segments", "0"], "argument --segments"),
    "chunk does not divide": (
        ["--algo", "toy", "--total-steps", "64", "--seeds", "8", "--seed-chunk", "3"],
        "seed_chunk=3 does not divide the 8 grid points",
    ),
    "unknown flag": (["--algo", "toy", "--total-steps", "64", "--lr", "1"], "--lr"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_message_and_exit_status_2(case, tmp_path):
    args, says = BAD[case]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", *args, "--cpu-layout", "default"]
        + ["--no-progress", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert says in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr and not proc.stdout
    assert not out.exists()
    assert proc.stderr.startswith("python -m benchmarks.train")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def toy(out, *flags):
    return train.main(["--algo", "toy", "--seeds", "2", "--no-progress", "--out", str(out), *flags])


def test_a_larger_total_steps_extends_the_run_in_its_own_segments(tmp_path):
    assert toy(tmp_path / "a", "--total-steps", "640", "--segments", "4") == 0  # 20 x 5
    assert toy(tmp_path / "a", "--total-steps", "1280", "--segments", "4") == 0  # resumed
    assert toy(tmp_path / "b", "--total-steps", "1280", "--segments", "8") == 0  # 40 x 5
    extended, straight = (
        json.loads((tmp_path / d / "results.json").read_text()) for d in ("a", "b")
    )
    assert extended["iterations"] == 40 and extended["iterations_this_call"] == 20
    assert extended["final"] == straight["final"]
    # the same training metrics at the same iterations (the first call also evaluated at
    # its end, at iteration 20)
    trained = [
        [(r["iteration"], r.get("train")) for r in harness.read_log(tmp_path / d)]
        for d in ("a", "b")
    ]
    assert trained[0] == trained[1]


def test_resuming_another_config_is_refused_in_one_line(tmp_path, capsys):
    assert toy(tmp_path, "--total-steps", "64", "--segments", "2") == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        toy(tmp_path, "--total-steps", "64", "--segments", "2", "--decay", "0.5", "--dim", "8")
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "holds another run: decay: 0.9 -> 0.5; dim: 16 -> 8" in err
    assert "--no-resume" in err
