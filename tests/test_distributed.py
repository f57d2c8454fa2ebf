"""Two processes under `jax.distributed` (CPU collectives over gloo) train the same numbers
as one process with as many devices, through `python -m benchmarks.train --distributed`."""

import json
import os
import socket
import subprocess
import sys

from benchmarks import harness

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = [sys.executable, "-m", "benchmarks.train", "--algo", "toy", "--seeds", "4"]
TRAIN += ["--sweep", "decay=0.5,0.9", "--total-steps", "1280", "--segments", "4"]
TRAIN += ["--checkpoint-every", "2", "--no-progress"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, devices: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "JAX_NUM_CPU_DEVICES")}
    env["JAX_NUM_CPU_DEVICES"] = str(devices)
    return subprocess.Popen(
        TRAIN + args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def trained(out) -> list:
    return [(r["iteration"], r.get("train"), r.get("eval")) for r in harness.read_log(out)]


def test_two_processes_train_what_one_process_with_two_devices_trains(tmp_path):
    port = free_port()
    two = [
        start(
            ["--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
            + ["--process-id", str(i), "--out", str(tmp_path / "two")],
            devices=1,
        )
        for i in range(2)
    ]
    one = start(["--out", str(tmp_path / "one")], devices=2)
    for proc in [*two, one]:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("two", "one"))
    assert a["provenance"]["process_count"] == 2 and b["provenance"]["process_count"] == 1
    assert a["devices"] == b["devices"] == 2
    assert a["final"] == b["final"] and a["final_train"] == b["final_train"]
    assert trained(tmp_path / "two") == trained(tmp_path / "one")  # written once, by process 0
    assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == ["2", "4"]
