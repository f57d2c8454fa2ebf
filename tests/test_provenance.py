"""benchmarks.provenance: commit, versions, machine, command and times of a result."""

import datetime
import subprocess
import sys

import jax

from benchmarks import provenance


def test_provenance_records_commit_versions_machine_command_and_times():
    started = provenance.now()
    p = provenance.provenance(started, argv=["study.py", "--out", "a b"])
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=provenance.ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert p["commit"] == (head or None)
    assert p["dirty"] in (True, False, None)
    for name in ("python", "jax", "jaxlib", "optax", "flax", "gymnax", "orbax-checkpoint"):
        assert p["versions"][name], name
    assert p["versions"]["jax"] == jax.__version__
    assert p["backend"] == jax.default_backend()
    assert p["device_count"] == len(jax.devices()) and p["device_kind"]
    assert p["command"].startswith("python ") and p["command"].endswith("--out 'a b'")
    start = datetime.datetime.fromisoformat(p["started_utc"])
    end = datetime.datetime.fromisoformat(p["ended_utc"])
    assert start.tzinfo is not None and start <= end


def test_a_module_run_is_written_as_python_dash_m():
    code = (
        "import sys; from benchmarks import provenance; "
        "sys.modules['__main__'].__spec__ = type('S', (), {'name': 'benchmarks.train'})(); "
        "print(provenance.command(['/x/train.py', '--algo', 'dqn']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=provenance.ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "python -m benchmarks.train --algo dqn"


def test_the_commit_is_the_one_at_the_start_and_a_later_one_is_recorded_beside_it(monkeypatch):
    start = {"commit": "a" * 40, "dirty": False}
    monkeypatch.setattr(provenance, "AT_IMPORT", start)
    monkeypatch.setattr(provenance, "git_state", lambda: start)
    assert provenance.run_state() == start
    monkeypatch.setattr(provenance, "git_state", lambda: {"commit": "b" * 40, "dirty": True})
    p = provenance.provenance()
    assert p["commit"] == "a" * 40 and p["dirty"] is False
    assert p["commit_at_end"] == "b" * 40 and p["dirty_at_end"] is True
