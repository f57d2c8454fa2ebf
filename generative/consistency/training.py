"""Training consistency models: `init`, `step`, `units`.

One step draws a batch, one level index n and one noise vector per example, takes an Adam
step on the batch loss, then moves the target (`stabilizers.ema` with decay mu(k), or
`stabilizers.periodic(teacher_every, teacher_decay)`) and the sampling EMA (decay
`sample_ema`) toward the new online params.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

import stabilizers
from generative import data as gdata
from generative import networks
from generative.consistency.config import (
    CURRICULA,
    DISTANCES,
    NOISE_SAMPLING,
    TEACHERS,
    WEIGHTINGS,
    Config,
)
from generative.consistency.loss import batch_loss
from generative.consistency.model import data_shape, images, network
from generative.consistency.schedules import (
    karras_sigma,
    num_iterations,
    num_scales,
    sample_index,
    target_decay,
)


class State(NamedTuple):
    """Training state of CT / iCT.

    Attributes:
      params: online params theta.
      target: target params theta^- (the teacher, moved by `teacher_tracker`).
      ema: sampling EMA of theta (decay `sample_ema`), what samples are drawn from.
      opt_state: Adam's state.
      target_state: state of the target's tracker.
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


def sample_data(key: jax.Array, config: Config) -> jax.Array:
    """A training batch `[batch_size, ...]`: fresh toy points or random training images."""
    if config.data in gdata.TOYS:
        return gdata.sample_toy(key, config.data, config.batch_size)
    pixels = jnp.asarray(images(config))  # uint8 constant
    idx = jax.random.randint(key, (config.batch_size,), 0, pixels.shape[0])
    return gdata.to_unit_range(pixels[idx], gdata.levels(config.data))


def _optimizer(config: Config) -> optax.GradientTransformation:
    """Adam with the learning-rate schedule: a linear warmup, then constant or cosine to 0."""
    k_total = num_iterations(config)
    warm = min(config.warmup, k_total - 1)

    def schedule(count):
        c = jnp.asarray(count, jnp.float32)
        ramp = jnp.minimum(1.0, (c + 1.0) / max(warm, 1)) if warm > 0 else 1.0
        if config.lr_schedule == "constant":
            anneal = 1.0
        elif config.lr_schedule == "cosine":
            frac = jnp.clip((c - warm) / max(k_total - warm, 1), 0.0, 1.0)
            anneal = 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        else:
            raise ValueError(
                f"lr_schedule must be 'constant' or 'cosine'; got {config.lr_schedule!r}"
            )
        return config.learning_rate * ramp * anneal

    return optax.adam(schedule, b2=config.adam_b2)


def teacher_decay_at(config: Config, count: jax.Array) -> jax.Array:
    """The decay of the teacher's step at step `count`: mu(count), or a "periodic"
    teacher's non-negative `teacher_decay`."""
    mu = jnp.asarray(target_decay(config)(count), jnp.float32)
    if config.teacher_tracker == "schedule":
        return mu
    return jnp.where(config.teacher_decay < 0, mu, jnp.asarray(config.teacher_decay, jnp.float32))


def teacher_tracker(config: Config, count: jax.Array) -> optax.GradientTransformation:
    """The teacher's tracker at step `count`: `ema(mu)` ("schedule") or
    `periodic(teacher_every, teacher_decay_at(count))` ("periodic")."""
    if config.teacher_tracker == "schedule":
        return stabilizers.ema(target_decay(config))
    return stabilizers.periodic(config.teacher_every, teacher_decay_at(config, count))


def _check(config: Config) -> None:
    if config.data not in gdata.TOYS + gdata.IMAGES:
        raise ValueError(f"data must be one of {gdata.TOYS + gdata.IMAGES}; got {config.data!r}")
    for name, value, allowed in (
        ("distance", config.distance, DISTANCES),
        ("weighting", config.weighting, WEIGHTINGS),
        ("curriculum", config.curriculum, CURRICULA),
        ("noise_sampling", config.noise_sampling, NOISE_SAMPLING),
        ("sample_from", config.sample_from, ("ema", "online")),
        ("teacher_tracker", config.teacher_tracker, TEACHERS),
        ("embedding", config.embedding, networks.EMBEDDINGS),
    ):
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    if config.layer_norm and config.data not in gdata.TOYS:
        raise ValueError("layer_norm applies to the 2-D network only")


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
        target_state=teacher_tracker(config, jnp.zeros((), jnp.int32)).init(params),
        ema_state=stabilizers.ema(config.sample_ema).init(params),
        count=stabilizers.shared_count(),
        key=key,
    )


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    """One CT step: a batch, one noise draw per example, Adam, then both EMAs move."""
    key, data_key, index_key, noise_key, dropout_key = jax.random.split(state.key, 5)
    k = state.count.value
    x = sample_data(data_key, config)
    n_scales = num_scales(k, config)
    n = sample_index(index_key, n_scales, config, (config.batch_size,))
    t_n = karras_sigma(n, n_scales, config)
    t_np1 = karras_sigma(n + 1, n_scales, config)
    z = jax.random.normal(noise_key, x.shape)
    dropout_keys = jax.random.split(dropout_key, config.batch_size) if config.dropout > 0 else None
    loss, grads = jax.value_and_grad(batch_loss)(
        state.params, state.target, x, z, t_n, t_np1, dropout_keys, config
    )
    updates, opt_state = _optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    target, target_state = stabilizers.update_target(
        teacher_tracker(config, k), params, state.target, state.target_state
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
        "num_scales": n_scales.astype(jnp.float32),
        "target_decay": teacher_decay_at(config, k),
    }


def units(config: Config) -> tuple[str, int]:
    """One iteration consumes `batch_size` training samples."""
    return "samples", config.batch_size
