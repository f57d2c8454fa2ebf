"""Short runs of every family pinned to numbers recorded before a refactor.

Each case trains a tiny config for two seeds through the harness (two segments, no files)
and compares its final evaluation and last training metrics with `pinned.json`. A
refactor that keeps behaviour keeps these numbers; one that changes the math does not.
The numbers were recorded on an x86-64 CPU under this suite's XLA flags (conftest.py);
another CPU may round a few operations differently, hence the small tolerance.

Regenerate (only when a change of numbers is intended, and say why in the commit):

    STABILIZERS_PIN_WRITE=1 python -m pytest tests/test_pinned.py -q
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest

from benchmarks import algorithm, harness

PINNED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pinned.json")
WRITE = os.environ.get("STABILIZERS_PIN_WRITE") == "1"

_RL = dict(batch_size=32, buffer_size=512, hidden=(16,), learning_starts=64, eval_episodes=2)
_SSL = dict(batch_size=32, total_steps=32 * 8, hidden_dim=32, projection_dim=16)
_VAE = dict(
    num_train=128,
    num_val=32,
    num_test=32,
    embed=8,
    hidden=8,
    eval_examples=32,
    iw_samples=10,
    iw_chunk=5,
    epoch_iterations=10,
)

# case: (registered algorithm, config overrides on its default config, iterations)
CASES = {
    "dqn": ("dqn", dict(_RL, num_envs=4, train_every=2, target_every=8), 60),
    "dqn_ema": ("dqn", dict(_RL, num_envs=4, train_every=4, target="ema"), 60),
    "ddpg": ("ddpg", _RL, 100),
    "td3": ("td3", _RL, 100),
    "sac": ("sac", _RL, 100),
    "ct": (
        "ct",
        dict(width=16, depth=1, batch_size=32, total_steps=32 * 40, eval_samples=100),
        40,
    ),
    "ict": (
        "ict",
        dict(width=16, depth=1, batch_size=32, total_steps=32 * 40, eval_samples=100),
        40,
    ),
    "byol": ("byol", _SSL, 8),
    "moco_v2": ("moco_v2", dict(_SSL, queue_size=64), 8),
    "moco_v3": ("moco", _SSL, 8),
    "vae": ("vae", _VAE, 20),
    "vae_aggressive": ("vae", dict(_VAE, aggressive=True, inner_max_steps=6, inner_window=2), 20),
}


def _config(config, overrides):
    if "data" in overrides or not hasattr(config, "data") or not hasattr(config.data, "num_train"):
        return dataclasses.replace(config, **overrides)
    # the SSL configs: a small data set
    data = dataclasses.replace(config.data, num_train=128, num_test=64)
    return dataclasses.replace(config, data=data, probe_train=64, calibration=32, **overrides)


def _numbers(name: str) -> dict:
    algo_name, overrides, iterations = CASES[name]
    entry = algorithm.load(algo_name)
    result = harness.run(
        entry.module,
        _config(entry.config, overrides),
        iterations=iterations,
        seeds=2,
        segment_length=iterations // 2,
        progress=False,
        plot=False,
    )
    assert result.status == "completed"
    out = {}
    for kind in ("final", "final_train"):
        for metric, per_point in result.results[kind].items():
            out[f"{kind}/{metric}"] = per_point
    return out


def _load() -> dict:
    if not os.path.exists(PINNED):
        return {}
    with open(PINNED) as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(CASES))
def test_short_run_keeps_its_pinned_numbers(name):
    got = _numbers(name)
    if WRITE:
        pinned = _load()
        pinned[name] = got
        with open(PINNED, "w") as f:
            json.dump(pinned, f, indent=1, sort_keys=True)
        return
    want = _load()[name]
    assert sorted(got) == sorted(want), (sorted(got), sorted(want))
    for metric in want:
        a = np.asarray(got[metric], dtype=np.float64)
        b = np.asarray(want[metric], dtype=np.float64)
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6, err_msg=f"{name}: {metric}")
