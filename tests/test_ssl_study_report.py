"""The SSL study's Markdown tables name the aggregate over seeds by `benchmarks.stats.label`:
a trimmed mean of fewer than 4 seeds is a mean, not an IQM."""

import argparse
import types

import pytest

from benchmarks import ssl_study


def stub_row(seeds: int) -> dict:
    values = [0.3 + 0.01 * s for s in range(seeds)]
    return {
        "linear_probe": sum(values) / seeds,
        "linear_probe_seeds": values,
        "knn": 0.2,
        "knn_seeds": [0.2] * seeds,
        "projection_std": 0.1,
        "lag": 0.01,
        "run_seconds": 1.0,
        "samples": 640,
    }


@pytest.mark.parametrize(("seeds", "label"), [(3, "mean"), (4, "IQM")])
def test_blur_table_names_its_aggregate(seeds, label, monkeypatch):
    written = {}
    monkeypatch.setattr(ssl_study, "_summarise", lambda run, n: [stub_row(n)])
    monkeypatch.setattr(ssl_study, "_write", lambda name, md, summary, args: written.update(md=md))
    augment = types.SimpleNamespace(blur_prob=(0.5, 0.5))
    runs = [types.SimpleNamespace(config=types.SimpleNamespace(augment=augment))]
    args = argparse.Namespace(seeds=seeds, batch_size=64)
    ssl_study.blur_report(runs, args, {"linear_probe": 0.1, "knn": 0.4})
    header = written["md"].splitlines()[0]
    assert f"{seeds} seeds ({label}; per-seed values in brackets)" in header
    assert ("IQM" in header) == (label == "IQM")
