"""Improved Consistency Training (Song & Dhariwal 2023) as its own algorithm entry.

The same `init` / `step` / `evaluate` as `generative.consistency`; the defaults of `Config`
are those of `consistency.PRESETS["ict"]` (a test holds them equal), so
`python -m benchmarks.train --algo ict` runs iCT without repeating its flags, with that
preset's one departure from the paper: dropout 0, not CIFAR-10's 0.3. The registry entry
"generative.consistency:ict" replaces this module.
"""

from __future__ import annotations

from flax import struct

from generative import consistency
from generative.consistency import State, evaluate, init, sample, sampling_params, step, units

__all__ = ["Config", "State", "evaluate", "init", "sample", "sampling_params", "step", "units"]


@struct.dataclass
class Config(consistency.Config):
    """`consistency.Config` with the defaults of `consistency.PRESETS["ict"]`."""

    distance: str = struct.field(pytree_node=False, default="pseudo_huber")
    """d: "l2" (mean square), "l1" (mean absolute) or "pseudo_huber" (whole vector)."""
    weighting: str = struct.field(pytree_node=False, default="ict")
    """lambda: "uniform" (CT: 1) or "ict" (1 / (t_{n+1} - t_n))."""
    curriculum: str = struct.field(pytree_node=False, default="ict")
    """N(k): "ct" (consistency_steps, square-root growth) or "ict" (ict_steps, doubling)."""
    noise_sampling: str = struct.field(pytree_node=False, default="lognormal")
    """n: "uniform" on {0..N-2} (CT) or "lognormal" (iCT's discretised lognormal)."""
    s0: int = struct.field(pytree_node=False, default=10)
    """Initial number of discretisation steps (CT: 2; iCT: 10)."""
    s1: int = struct.field(pytree_node=False, default=1280)
    """Final number of discretisation steps (CT: 150; iCT: 1280)."""
    fourier_scale: float = struct.field(pytree_node=False, default=0.02)
    """Standard deviation of the frozen Fourier frequencies (CM: 16; iCT: 0.02)."""
    adam_b2: float = 0.995
    """Adam's beta2 (iCT: 0.995)."""
    mu0: float = 0.0
    """Target EMA decay at k = 0; mu(k) = exp(s0 ln mu0 / N(k)). 0: no target EMA (iCT)."""


PRESETS = {
    "smoke": Config(width=16, depth=1, batch_size=32, total_steps=32 * 40, eval_samples=100),
}
"""Named configs. "smoke": a run of a few seconds on a CPU, to check an install."""
