"""Sampling from a consistency model and the evaluation of its samples.

Reference: Song, Dhariwal, Chen & Sutskever, Consistency models, 2023, Algorithm 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from generative import data as gdata
from generative import metrics as gmetrics
from generative.consistency.config import Config
from generative.consistency.model import consistency_fn, data_shape
from generative.consistency.training import State


def sample(
    params: Any,
    key: jax.Array,
    config: Config,
    num_samples: int,
    taus: Sequence[float] | jax.Array = (),
) -> jax.Array:
    """Draws `num_samples` samples with the multistep consistency sampler (Algorithm 1).

    `x = f(T z_0, T)`, then for each intermediate level tau (descending):
    `x = f(x + sqrt(tau^2 - eps^2) z_i, tau)`. No taus: one-step sampling. Image samples
    are clipped to [-1, 1] after every step, as in the authors' sampler.

    Args:
      params: the params to sample with (the sampling EMA, as the paper evaluates).
      key: the key; the same key gives the same samples.
      config: the config.
      num_samples: the number of samples.
      taus: intermediate noise levels, each in (sigma_min, sigma_max).

    Returns:
      Samples `[num_samples, ...]`.
    """
    taus = jnp.asarray(taus, jnp.float32).reshape(-1)
    keys = jax.random.split(key, taus.shape[0] + 1)
    shape = (num_samples,) + data_shape(config)
    clip = config.data in gdata.IMAGES

    def denoise(x, t):
        ts = jnp.full((x.shape[0],), t)
        if not clip:
            return jax.vmap(consistency_fn, in_axes=(None, 0, 0, None))(params, x, ts, config)
        # images: chunks of 256 bound the memory of the U-Net's activations; unrolled, not
        # a lax.map, because XLA's CPU backend runs convolutions slowly inside loop bodies
        fn = jax.vmap(consistency_fn, in_axes=(None, 0, 0, None))
        out = jnp.concatenate(
            [
                fn(params, x[i : i + 256], ts[i : i + 256], config)
                for i in range(0, num_samples, 256)
            ]
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

    2-D: energy distance (`metrics.energy_distance`, the V-statistic) between
    `eval_samples` samples and as many fresh held-out points, the floor (the same distance
    between two independent held-out sets of that size), their ratios, and the one-step
    distance of the online params; beside them the unbiased U-statistics
    (`metrics.energy_distance_u`, `energy_u_*`), about 0 for a perfect model at any n.
    The floor is the V-statistic's finite-sample bias, about 2 E|X - X'| / n, so a ratio
    to it grows with n for a fixed model. Images: the Frechet distance of classifier
    features between samples and one half of the real images, and its floor (the two
    halves against each other).
    """
    one_key, two_key, online_key, held_key, held2_key = jax.random.split(key, 5)
    params = sampling_params(state, config)
    mid = jnp.reshape(config.mid_sigma, (1,))
    if config.data in gdata.TOYS:
        num_samples = config.eval_samples
        held = gdata.sample_toy(held_key, config.data, num_samples)
        held2 = gdata.sample_toy(held2_key, config.data, num_samples)
        one_samples = sample(params, one_key, config, num_samples)
        two_samples = sample(params, two_key, config, num_samples, mid)
        floor = gmetrics.energy_distance(held, held2)
        one = gmetrics.energy_distance(one_samples, held)
        two = gmetrics.energy_distance(two_samples, held)
        online = gmetrics.energy_distance(
            sample(state.params, online_key, config, num_samples), held
        )
        return {
            "energy_1step": one,
            "energy_2step": two,
            "energy_1step_online": online,
            "energy_floor": floor,
            "ratio_1step": one / floor,
            "ratio_2step": two / floor,
            "energy_u_1step": gmetrics.energy_distance_u(one_samples, held),
            "energy_u_2step": gmetrics.energy_distance_u(two_samples, held),
            "energy_u_floor": gmetrics.energy_distance_u(held, held2),
        }
    num_samples = min(config.eval_samples, gmetrics.real_halves(config.data)[0].shape[0])
    feats_a, floor = gmetrics.real_reference(config.data, num_samples)
    feats_a = jnp.asarray(feats_a)
    floor = jnp.asarray(floor, jnp.float32)
    one = gmetrics.frechet_distance(
        gmetrics.classifier_features(config.data, sample(params, one_key, config, num_samples)),
        feats_a,
    )
    two = gmetrics.frechet_distance(
        gmetrics.classifier_features(
            config.data, sample(params, two_key, config, num_samples, mid)
        ),
        feats_a,
    )
    return {"frechet_1step": one, "frechet_2step": two, "frechet_floor": floor}
