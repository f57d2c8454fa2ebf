"""Every results file carries where it came from: the harness's `results.json` and each
study's writers (on stubs where the study itself is long)."""

import argparse
import json
import sys

from benchmarks import (
    consistency_study,
    harness,
    provenance,
    rl_studies,
    rl_throughput,
    ssl_study,
    toy,
    vae_figure,
    vae_study,
)

VERSIONS = ("python", "jax", "jaxlib", "optax", "flax", "gymnax", "orbax-checkpoint")
KEYS = ("commit", "dirty", "backend", "device_kind", "device_count", "cpu_layout", "command")


def assert_provenance(path):
    with open(path) as f:
        p = json.load(f)["provenance"]
    for key in (*KEYS, "started_utc", "ended_utc"):
        assert key in p, (path, key)
    assert all(p["versions"][name] for name in VERSIONS), p["versions"]
    assert p["device_count"] >= 1 and p["device_kind"] and p["backend"]
    assert p["started_utc"] <= p["ended_utc"]


def test_harness_results(tmp_path):
    harness.run(toy, toy.Config(), iterations=4, segment_length=2, out_dir=tmp_path, plot=False)
    assert_provenance(tmp_path / "results.json")


def test_consistency_study_results(tmp_path, monkeypatch):
    monkeypatch.setattr(consistency_study, "RESULTS", str(tmp_path))
    consistency_study._write("stub", {"table": {"mu0=0.9": {"ratio_1step_iqm": 2.0}}})
    assert_provenance(tmp_path / "stub.json")


def test_ssl_study_results(tmp_path):
    args = argparse.Namespace(started=provenance.now(), docs=str(tmp_path))
    ssl_study._write("stub", "| table |\n", {"rows": [], "seeds": 3}, args)
    assert_provenance(tmp_path / "results" / "stub.json")


def test_rl_studies_table(tmp_path):
    rl_studies.write_table(str(tmp_path / "rl_stub.json"), {"ema": {"iqm": 500.0}})
    assert_provenance(tmp_path / "rl_stub.json")


def test_rl_throughput_worker(tmp_path, monkeypatch):
    row = {"algo": "dqn", "seeds": 1, "flops_per_second": 1.0, "env_steps_per_second": 1.0}
    monkeypatch.setattr(rl_throughput, "gemm_rate", lambda: 2.0)
    monkeypatch.setattr(rl_throughput, "measure_agent", lambda *a, **k: dict(row))
    out = rl_throughput.worker("default", "flashbax")
    (tmp_path / "part.json").write_text(json.dumps(out))
    assert_provenance(tmp_path / "part.json")


def test_vae_study_results(tmp_path):
    vae_study.write_json(str(tmp_path / "final.json"), {"nll": [90.0], "seeds": [0]})
    assert_provenance(tmp_path / "final.json")


def test_vae_figure_snapshots(tmp_path, monkeypatch):
    snap = {"iteration": 0, "mu": [0.0], "model": [0.0], "kl": 0.0, "mi": 0.0}
    monkeypatch.setattr(vae_figure, "snapshots", lambda *a: [snap])
    monkeypatch.setattr(vae_figure, "plot", lambda *a: None)
    monkeypatch.setattr(sys, "argv", ["vae_figure.py"])
    data = tmp_path / "snapshots.json"
    assert vae_figure.main(["--out", str(tmp_path / "f.png"), "--data-out", str(data)]) == 0
    assert_provenance(data)
