"""BYOL: Bootstrap Your Own Latent (Grill et al., NeurIPS 2020).

An online network (encoder f, projector g, predictor q) learns to predict, from one
augmented view of an image, the projection that a target network (f, g with parameters
xi) gives of another view. The target receives no gradient; it is an exponential moving
average of the online encoder and projector, `stabilizers.ema` with BYOL's cosine
schedule `stabilizers.schedules.cosine_momentum(base_momentum, K)`:

    xi <- tau_k xi + (1 - tau_k) theta,   tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2.

With `target_tracker="periodic"` the target follows `stabilizers.periodic(target_every,
target_decay)` instead: a constant decay, a hard copy, or (decay 0 every update) no target
at all, the predictor and stop-gradient of SimSiam (Chen & He 2021).

The loss is the normalised mean squared error between the online prediction and the
target projection, symmetrised over the two views (the official `regression_loss`,
`byol/utils/helpers.py`, and `loss_fn` in `byol/byol_experiment.py`):

    L = || q(g(f(v1)))^ - sg(g'(f'(v2)))^ ||^2 + || q(g(f(v2)))^ - sg(g'(f'(v1)))^ ||^2,

with ^ the l2 normalisation (each term is 2 - 2 cos, in [0, 4]), averaged over the batch.

Departures from the paper, for small images on a CPU: a 4-block conv encoder instead of
a ResNet-50, a 256-wide hidden layer and 64-d outputs instead of 4096 and 256, AdamW
(warmup + cosine) instead of LARS, the augmentations scaled to small images
(`representation.augment`), and a target initialised as a copy of the online network
(the official code draws it separately and reports no difference).

Usage, through the one harness:

    python -m benchmarks.train --algo byol --seeds 3 --out runs/byol
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

import stabilizers
from representation import common, networks
from representation import data as data_lib


@struct.dataclass
class Config(common.SSLConfig):
    """BYOL on small images."""

    use_predictor: bool = struct.field(pytree_node=False, default=True)
    """Put the predictor q on the online branch (False: compare projections directly)."""
    base_momentum: float = 0.996
    """tau_base: the target's EMA decay at step 0, rising to 1 along a cosine (BYOL)."""


class State(NamedTuple):
    """BYOL's training state.

    Attributes:
      online: `{"encoder", "projector", "predictor"}` parameters (trained).
      target: `{"encoder", "projector"}` parameters (EMA of the online ones).
      opt_state: AdamW state of `online`.
      target_state: the target tracker's state (its shared step count).
      key: the training key.
    """

    online: Any
    target: Any
    opt_state: optax.OptState
    target_state: optax.OptState
    key: jax.Array


def networks_of(config: Config) -> dict[str, Any]:
    """The modules: `encoder`, `projector`, `predictor`."""
    return {
        "encoder": networks.Encoder(channels=config.channels, strides=config.strides),
        "projector": networks.ProjectionHead(config.hidden_dim, config.projection_dim),
        "predictor": networks.ProjectionHead(config.hidden_dim, config.projection_dim),
    }


def momentum_schedule(config: Config):
    """tau_k: BYOL's cosine schedule from `base_momentum` to 1 over the K steps."""
    return stabilizers.schedules.cosine_momentum(config.base_momentum, common.iterations(config))


def _target_tx(config: Config, count) -> optax.GradientTransformation:
    if config.target_tracker == "schedule":
        return stabilizers.ema(momentum_schedule(config))
    return common.periodic_target(config, momentum_schedule(config), count)


def init(key: jax.Array, config: Config) -> State:
    encoder_key, projector_key, predictor_key, key = jax.random.split(key, 4)
    nets = networks_of(config)
    image = jnp.zeros((2,) + data_lib.shape(config.data)[1:])
    features = jnp.zeros((2, config.channels[-1]))
    projection = jnp.zeros((2, config.projection_dim))
    online = {
        "encoder": nets["encoder"].init(encoder_key, image)["params"],
        "projector": nets["projector"].init(projector_key, features)["params"],
        "predictor": nets["predictor"].init(predictor_key, projection)["params"],
    }
    target = {"encoder": online["encoder"], "projector": online["projector"]}
    return State(
        online=online,
        target=target,
        opt_state=common.optimizer(config).init(online),
        target_state=_target_tx(config, 0).init(target),
        key=key,
    )


def regression_loss(prediction: jax.Array, target: jax.Array) -> jax.Array:
    """BYOL's loss for ONE example: `||x^ - y^||^2 = 2 - 2 cos(x, y)`, in [0, 4].

    Args:
      prediction: `[d]` online prediction q(z).
      target: `[d]` target projection z' (the caller stops its gradient).
    """
    if prediction.ndim != 1 or prediction.shape != target.shape:
        raise ValueError(f"expected two [d] vectors; got {prediction.shape} and {target.shape}")
    x, y = common.l2_normalize(prediction), common.l2_normalize(target)
    return jnp.sum(jnp.square(x - y))


def loss_fn(online, target, view1, view2, config: Config):
    """The symmetrised BYOL loss of a batch of two views, and diagnostics.

    Gradients flow into `online` only: the target branch sits behind `stop_gradient`.

    Returns:
      `(loss, aux)` with `aux` holding the encoder features and projections of view 1.
    """
    nets = networks_of(config)
    target = jax.lax.stop_gradient(target)

    def online_branch(x):
        h = nets["encoder"].apply({"params": online["encoder"]}, x, "train")
        z = nets["projector"].apply({"params": online["projector"]}, h, "train")
        p = nets["predictor"].apply({"params": online["predictor"]}, z, "train")
        return h, z, (p if config.use_predictor else z)

    def target_branch(x):
        h = nets["encoder"].apply({"params": target["encoder"]}, x, "train")
        return jax.lax.stop_gradient(
            nets["projector"].apply({"params": target["projector"]}, h, "train")
        )

    h1, z1, p1 = online_branch(view1)
    _, _, p2 = online_branch(view2)
    t1, t2 = target_branch(view1), target_branch(view2)
    per_example = jax.vmap(regression_loss)(p1, t2) + jax.vmap(regression_loss)(p2, t1)
    return jnp.mean(per_example), {"features": h1, "projection": z1, "target": t2}


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    key, views_key = jax.random.split(state.key)
    view1, view2 = common.two_views(views_key, config)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.online, state.target, view1, view2, config
    )
    updates, opt_state = common.optimizer(config).update(grads, state.opt_state, state.online)
    online = optax.apply_updates(state.online, updates)
    count = state.target_state.count.value
    momentum = common.target_decay_at(config, momentum_schedule(config), count)
    target, target_state = stabilizers.update_target(
        _target_tx(config, count),
        {"encoder": online["encoder"], "projector": online["projector"]},
        state.target,
        state.target_state,
    )
    new = State(online, target, opt_state, target_state, key)
    return new, {
        "loss": loss,
        "lag": stabilizers.lag(
            {"encoder": online["encoder"], "projector": online["projector"]}, target
        ),
        "momentum": momentum,
        "embedding_std": common.normalized_std(aux["features"]),
        "projection_std": common.normalized_std(aux["projection"]),
    }


evaluate = common.evaluate
"""Linear-probe and k-NN test accuracy of the online encoder's features."""

units = common.units

PRESETS = {
    "smoke": Config(**common.SMOKE_SIZES),
}
"""Named configs. "smoke": a run of a few seconds on a CPU, to check an install."""
