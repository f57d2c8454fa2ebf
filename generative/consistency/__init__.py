"""Consistency Training (CT) and improved Consistency Training (iCT), with an EMA target.

A consistency model f(x, t) maps a noisy point `x + t z` at any noise level t in
[sigma_min, sigma_max] straight back to the clean point x (`model.consistency_fn`).
Consistency Training draws a level index n and one noise vector z and pulls the online
network at the higher level toward a target network at the lower one (`loss`):

    L = lambda(t_n) d( f_theta(x + t_{n+1} z, t_{n+1}), f_{theta^-}(x + t_n z, t_n) ),

with no gradient into theta^-. The target is `stabilizers.ema` of theta with decay
`mu(k) = exp(s0 ln mu0 / N(k))` (the paper's formula; the authors' code divides by
N(k) - 1, which gives 0.81 instead of 0.9 at k = 0 for mu0 = 0.9, s0 = 2), while the
number of levels N(k) grows (`schedules`). Improved CT is a preset of the same step,
`PRESETS["ict"]`. Samples come from a second, slow EMA of the online params, in one step
or with the multistep sampler (`sampling`).

Modules: `config` (Config, PRESETS), `schedules` (the noise grid, N(k), mu(k), the draw of
n), `model` (f and its network), `loss` (d, lambda, the loss), `training` (init, step,
units), `sampling` (sample, evaluate).

References: Song, Dhariwal, Chen & Sutskever, Consistency models, 2023; Song & Dhariwal,
Improved techniques for training consistency models, 2023.
"""

from generative.consistency.config import (
    CURRICULA,
    DISTANCES,
    NOISE_SAMPLING,
    PRESETS,
    TEACHERS,
    WEIGHTINGS,
    Config,
)
from generative.consistency.loss import batch_loss, consistency_loss, distance, weight
from generative.consistency.model import consistency_fn, data_shape, network, scalings
from generative.consistency.sampling import evaluate, sample, sampling_params
from generative.consistency.schedules import (
    index_logits,
    karras_sigma,
    num_iterations,
    num_scales,
    sample_index,
    target_decay,
)
from generative.consistency.training import (
    State,
    init,
    sample_data,
    step,
    teacher_decay_at,
    teacher_tracker,
    units,
)

__all__ = [
    "CURRICULA",
    "DISTANCES",
    "NOISE_SAMPLING",
    "PRESETS",
    "TEACHERS",
    "WEIGHTINGS",
    "Config",
    "State",
    "batch_loss",
    "consistency_fn",
    "consistency_loss",
    "data_shape",
    "distance",
    "evaluate",
    "index_logits",
    "init",
    "karras_sigma",
    "network",
    "num_iterations",
    "num_scales",
    "sample",
    "sample_data",
    "sample_index",
    "sampling_params",
    "scalings",
    "step",
    "target_decay",
    "teacher_decay_at",
    "teacher_tracker",
    "units",
    "weight",
]
