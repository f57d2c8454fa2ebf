"""benchmarks.cpu_layout: the split layout by default, the user's choice kept."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import cpu_layout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = (
    "import json, sys; from benchmarks import cpu_layout; "
    "chosen = cpu_layout.configure(*sys.argv[1:]); import jax; "
    "print(json.dumps([chosen, len(jax.devices('cpu')), __import__('os').environ.get("
    "'PJRT_NPROC')]))"
)


def probe(*args, **env_changes):
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "PJRT_NPROC")}
    env["XLA_FLAGS"] = ""
    env.update(env_changes)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_split_is_the_default_and_gives_a_device_per_core():
    chosen, devices, threads = probe()
    assert chosen == "split" and devices == (os.cpu_count() or 1) and threads == "1"


def test_default_keeps_jax_s_own_layout():
    assert probe("default")[:2] == ["default", 1]


def test_the_users_own_choice_is_kept():
    assert probe(JAX_NUM_CPU_DEVICES="3")[:2] == ["environment", 3]
    forced = probe(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert forced[:2] == ["environment", 2]


def test_after_jax_has_started_nothing_changes_and_bad_names_fail():
    import jax

    jax.devices()
    assert cpu_layout.configure("split") == "started"
    with pytest.raises(ValueError, match="split"):
        cpu_layout.configure("fast")


def test_a_later_call_keeps_the_first_choice_and_provenance_records_it():
    code = (
        "import json; from benchmarks import cpu_layout, provenance; "
        "first = cpu_layout.configure('split'); again = cpu_layout.configure(); "
        "print(json.dumps([first, again, provenance.machine()['cpu_layout']]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "PJRT_NPROC")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["split", "split", "split"]
