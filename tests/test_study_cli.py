"""The studies' command lines on bad input: one line naming the flag and the value, exit
status 2, no traceback, before anything is trained or written."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BAD = {
    "rl_studies unknown study": ("rl_studies", ["dqn-target"], "invalid choice: 'dqn-target'"),
    "rl_studies no seeds": ("rl_studies", ["sac", "--seeds", "0"], "argument --seeds"),
    "rl_studies unknown variant": ("rl_studies", ["sac", "--only", "td3"], "--only 'td3'"),
    "rl_studies layout": ("rl_studies", ["sac", "--cpu-layout", "fast"], "--cpu-layout"),
    "rl_throughput part": ("rl_throughput", ["--only", "split:ppo"], "argument --only"),
    "consistency_study length": (
        "consistency_study",
        ["ablation", "--iterations", "-10"],
        "argument --iterations: expected a positive integer; got '-10'",
    ),
    "consistency_study study": ("consistency_study", ["ablations"], "argument study"),
    "ssl_study batch": ("ssl_study", ["blur", "--batch-size", "0"], "argument --batch-size"),
    "ssl_study unknown run": ("ssl_study", ["blur", "--only", "blur=none"], "--only ['blur=none']"),
    "vae_study seeds": ("vae_study", ["run", "--seeds", "-1"], "argument --seeds"),
    "vae_study variant": ("vae_study", ["run", "--variants", "basic,fast"], "no 'fast'"),
    "vae_study field": ("vae_study", ["run", "--set", "latents=4"], "--set latents=4"),
    "vae_study choice": (
        "vae_study",
        ["run", "--variants", "basic", "--set", "optimizer=rmsprop"],
        "optimizer must be 'sgd' or 'adam'; got 'rmsprop'",
    ),
    "vae_figure iterations": ("vae_figure", ["--iterations", "0,ten"], "argument --iterations"),
    "vae_figure grid": ("vae_figure", ["--dz", "0"], "--dz 0.0"),
    "transform_cost steps": ("transform_cost", ["--steps", "0"], "argument --steps"),
    "cross_field field": ("cross_field", ["run", "--fields", "physics"], "--fields physics"),
    "cross_field seeds": ("cross_field", ["run", "--seeds", "0"], "argument --seeds"),
    "cross_field program": (
        "cross_field",
        ["run", "--fields", "generative", "--only", "ct,dqn"],
        "no program 'dqn'",
    ),
    "cross_field flag": ("cross_field", ["report", "--form", "x.json"], "--form"),
    "cross_field theory seeds": ("cross_field.theory", ["--seeds", "0"], "argument --seeds"),
    "cross_field theory landmark": ("cross_field.theory", ["--landmark", "x"], "landmark"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_study_input_is_one_line_and_exit_status_2(case, tmp_path):
    module, args, says = BAD[case]
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # anything written would land here
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    prog, _, _ = proc.stderr.partition(": error: ")
    assert prog.startswith(f"python -m benchmarks.{module}"), proc.stderr
    assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and not os.listdir(tmp_path)
