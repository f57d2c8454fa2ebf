"""The VAE study's bookkeeping: its configs, config overrides, collapse / escape labels,
the tables (finished jobs and jobs cut off by a time limit); the figure's configs."""

import json
import math
import os

import pytest

from benchmarks import vae_figure, vae_study
from generative import vae


def test_variants_change_only_their_fields_of_one_base():
    synthetic = vae_study.variants("synthetic")
    assert list(synthetic)[:3] == ["basic", "anneal", "aggressive"]
    base = synthetic["basic"]
    assert base.data == "synthetic" and base.iw_samples == 0 and not base.aggressive
    fields = vae.Config.__dataclass_fields__

    def changed(cfg):
        return {f: getattr(cfg, f) for f in fields if getattr(cfg, f) != getattr(base, f)}

    assert changed(synthetic["anneal"]) == {"kl_start": 0.1, "warm_up_epochs": 5.0}
    assert changed(synthetic["aggressive-mi-full"]) == {"aggressive": True, "switch_mi_batch": 0}
    assert changed(synthetic["aggressive-patience5"]) == {
        "aggressive": True,
        "switch_patience": 5,
        "switch_compare": "best",
        "switch_initial": -math.inf,
    }
    assert changed(synthetic["basic-adam"]) == {"optimizer": "adam", "learning_rate": 1e-3}
    mnist = vae_study.variants("mnist")
    assert list(mnist) == ["basic", "anneal", "aggressive"]
    assert mnist["basic"].data == "mnist" and mnist["basic"].latent == 32
    assert mnist["basic"].iw_samples == 0 and mnist["anneal"].kl_start == 0.1
    assert mnist["basic"].optimizer == vae.PRESETS["mnist"].optimizer == "adam"
    with pytest.raises(SystemExit):
        vae_study.variants("cifar")
    with pytest.raises(SystemExit):
        vae_study.job_config("synthetic", "no-such-variant")


def test_the_scan_unroll_is_a_config_field():
    assert vae_study.job_config("synthetic", "basic", {"unroll": 12}).unroll == 12
    figure = vae_figure.configs(unroll=4)
    assert list(figure) == ["basic", "aggressive"]
    assert [c.aggressive for c in figure.values()] == [False, True]
    assert all(c.unroll == 4 and c.latent == 1 and c.iw_samples == 0 for c in figure.values())


def test_overrides_parse_json_values_and_reject_unknown_fields():
    got = vae_study.parse_overrides(["num_train=4000", "optimizer=adam", "learning_rate=1e-3"])
    assert got == {"num_train": 4000, "optimizer": "adam", "learning_rate": 1e-3}
    cfg = vae_study.job_config("synthetic", "aggressive", got)
    assert cfg.aggressive and cfg.num_train == 4000 and cfg.optimizer == "adam"
    with pytest.raises(SystemExit):
        vae_study.parse_overrides(["no_such_field=1"])
    with pytest.raises(SystemExit):
        vae_study.parse_overrides(["num_train"])


def test_status_labels_collapse_escape_and_in_between():
    final = {"au": [0, 2, 1, 0], "kl": [0.01, 1.5, 0.3, 0.2], "mi": [-0.02, 1.4, 0.05, 0.0]}
    got = [vae_study.status(final, i) for i in range(4)]
    assert got == ["collapsed", "escaped", "partial", "partial"]


def _eval(kl, mi, au):
    return {"elbo": [-40.0] * 2, "kl": kl, "mi": mi, "mi_batch": mi, "au": au}


def test_report_reads_finished_and_cut_off_jobs(tmp_path):
    root = tmp_path / "runs"
    done = root / "synthetic" / "basic" / "seeds0-1"
    done.mkdir(parents=True)
    final = {
        **_eval([0.01, 0.0], [0.0, -0.01], [0, 0]),
        "nll": [40.0, 41.0],
        "seeds": [0, 1],
        "iterations": 100,
        "switch_off_epoch": [None, None],
        "run_seconds": 5.0,
        "compile_seconds": 2.0,
        "device": "cpu",
    }
    (done / "final.json").write_text(json.dumps(final))
    cut = root / "synthetic" / "aggressive" / "seeds0-1"
    cut.mkdir(parents=True)
    lines = [
        {"iteration": 0, "eval": _eval([0.0, 0.0], [0.0, 0.0], [0, 0])},
        {
            "iteration": 50,
            "train": {"aggressive": [1.0, 0.5]},
            "eval": _eval([1, 1], [1, 1], [2, 2]),
        },
        {
            "iteration": 60,
            "train": {"aggressive": [0.0, 0.0]},
            "eval": _eval([2, 0], [2, 0], [2, 0]),
        },
    ]
    (cut / "log.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    vae_study.main(
        ["report", "--out", str(root), "--results", str(tmp_path / "res"), "--name", "t"]
    )
    out = json.loads((tmp_path / "res" / "t.json").read_text())
    rows = {s["variant"]: s for s in out["summary"]}
    assert rows["basic"]["collapsed"] == 2 and rows["basic"]["nll"] == "40.50 ± 0.71"
    assert rows["basic"]["run_seconds"] == 5.0 and rows["basic"]["finished"]
    agg = rows["aggressive"]
    assert agg["escaped"] == 1 and agg["collapsed"] == 1 and agg["nll"] == "-"
    assert agg["iterations"] == 60 and not agg["finished"]
    seeds = out["per_seed"]["aggressive"]
    assert [r["switch_off_epoch"] for r in seeds] == ["in iterations 50-60", "in iterations 0-50"]
    assert "unfinished" in (tmp_path / "res" / "t.md").read_text()
    assert os.path.exists(tmp_path / "res" / "t.md")
