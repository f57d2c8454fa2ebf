"""BYOL: Bootstrap Your Own Latent (Grill et al., NeurIPS 2020).

An online network (encoder f, projector g, predictor q) learns to predict, from one
augmented view of an image, the projection that a target network (f, g with parameters
xi) gives of another view. The target receives no gradient; it is an exponential moving
average of the online encoder and projector, `stabilizers.ema` with BYOL's cosine
schedule `stabilizers.schedules.cosine_momentum(base_momentum, K)`:

    xi <- tau_k xi + (1 - tau_k) theta,   tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2.

The loss is the normalised mean squared error between the online prediction and the
target projection, symmetrised over the two views (the official `regression_loss`,
`byol/utils/helpers.py`, and `loss_fn` in `byol/byol_experiment.py`):

    L = || q(g(f(v1)))^ - sg(g'(f'(v2)))^ ||^2 + || q(g(f(v2)))^ - sg(g'(f'(v1)))^ ||^2,

with ^ the l2 normalisation (each term is 2 - 2 cos, in [0, 4]), averaged over the batch.

Departures from the paper, for small images on a CPU: a 4-block conv encoder instead of
a ResNet-50, a 256-wide hidden layer and 64-d outputs instead of 4096 and 256, AdamW
(warmup + cosine) instead of LARS, the augmentations scaled to small images
(`representation.augment`), and a target initialised as a copy of the online network
(the official code draws it separately and reports no difference). The heads keep
BYOL's batch norm in their hidden layer: without batch statistics (layer norm or no
norm), BYOL collapsed on these small digit images even with the predictor.

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
from representation.augment import Augment
from representation.data import DataSpec


@struct.dataclass
class Config:
    """BYOL on small images."""

    data: DataSpec = struct.field(pytree_node=False, default=DataSpec())
    """The data set (default: cluttered MNIST, generated locally)."""
    batch_size: int = struct.field(pytree_node=False, default=256)
    """Images per step (each seen in two views)."""
    total_steps: int = struct.field(pytree_node=False, default=256 * 1500)
    """Training length in samples; K = total_steps // batch_size iterations."""
    channels: tuple[int, ...] = struct.field(pytree_node=False, default=(16, 32, 64))
    """Output channels of the encoder's conv blocks; the last is the feature size."""
    strides: tuple[int, ...] = struct.field(pytree_node=False, default=(2, 2, 2))
    """Strides of the encoder's conv blocks."""
    hidden_dim: int = struct.field(pytree_node=False, default=256)
    """Hidden width of the projector and the predictor (BYOL: 4096)."""
    projection_dim: int = struct.field(pytree_node=False, default=64)
    """Output width of the projector and the predictor (BYOL: 256)."""
    use_predictor: bool = struct.field(pytree_node=False, default=True)
    """Put the predictor q on the online branch (False: compare projections directly)."""
    warmup_fraction: float = struct.field(pytree_node=False, default=0.05)
    """Fraction of training spent warming the learning rate up from 0."""
    probe_train: int = struct.field(pytree_node=False, default=4000)
    """Training images the probes fit on (the first ones of the training split)."""
    calibration: int = struct.field(pytree_node=False, default=1000)
    """Training images whose batch statistics the evaluation's batch norms use."""
    learning_rate: float = 1e-2
    """Peak AdamW learning rate."""
    weight_decay: float = 1e-4
    """AdamW weight decay (not on biases and batch-norm parameters)."""
    base_momentum: float = 0.996
    """tau_base: the target's EMA decay at step 0, rising to 1 along a cosine (BYOL)."""
    augment: Augment = Augment()
    """Augmentation strengths."""


class State(NamedTuple):
    """BYOL's training state.

    Attributes:
      online: `{"encoder", "projector", "predictor"}` parameters (trained).
      target: `{"encoder", "projector"}` parameters (EMA of the online ones).
      opt_state: AdamW state of `online`.
      target_state: `stabilizers.ema` state (its shared step count).
      key: the training key.
    """

    online: Any
    target: Any
    opt_state: optax.OptState
    target_state: optax.OptState
    key: jax.Array


def iterations(config: Config) -> int:
    """K, the number of training steps."""
    return max(1, config.total_steps // config.batch_size)


def networks_of(config: Config) -> dict[str, Any]:
    """The modules: `encoder`, `projector`, `predictor`."""
    return {
        "encoder": networks.Encoder(channels=config.channels, strides=config.strides),
        "projector": networks.MLP(config.hidden_dim, config.projection_dim),
        "predictor": networks.MLP(config.hidden_dim, config.projection_dim),
    }


def _optimizer(config: Config) -> optax.GradientTransformation:
    return common.optimizer(
        config.learning_rate, config.weight_decay, iterations(config), config.warmup_fraction
    )


def momentum_schedule(config: Config):
    """tau_k: BYOL's cosine schedule from `base_momentum` to 1 over the K steps."""
    return stabilizers.schedules.cosine_momentum(config.base_momentum, iterations(config))


def _target_tx(config: Config) -> optax.GradientTransformation:
    return stabilizers.ema(momentum_schedule(config))


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
        opt_state=_optimizer(config).init(online),
        target_state=_target_tx(config).init(target),
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
    view1, view2 = common.two_views(views_key, config.data, config.batch_size, config.augment)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.online, state.target, view1, view2, config
    )
    updates, opt_state = _optimizer(config).update(grads, state.opt_state, state.online)
    online = optax.apply_updates(state.online, updates)
    momentum = momentum_schedule(config)(state.target_state.count.value)
    target, target_state = stabilizers.update_target(
        _target_tx(config),
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


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """Linear-probe and k-NN test accuracy of the online encoder's features."""
    del key  # the probes are deterministic
    encoder = networks_of(config)["encoder"]
    return common.evaluate_encoder(
        encoder, state.online["encoder"], config.data, config.probe_train, config.calibration
    )


def units(config: Config) -> tuple[str, int]:
    return "samples", config.batch_size


PRESETS = {
    "smoke": Config(
        data=DataSpec(num_train=128, num_test=64),
        batch_size=32,
        total_steps=32 * 8,
        hidden_dim=32,
        projection_dim=16,
        probe_train=64,
        calibration=32,
    ),
}
"""Named configs. "smoke": a run of a few seconds on a CPU, to check an install."""
