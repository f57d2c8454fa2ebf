"""A supervised encoder: the ceiling of the self-supervised learners' linear probe.

The encoder of `representation.networks` with a linear classifier on its features,
trained by cross-entropy on the labelled images the probes fit on (the first
`probe_train` training images), one augmented view per image, with the optimizer, batch
size and number of samples of the self-supervised learner it bounds. Its evaluation is
theirs (`representation.common.evaluate`: a linear probe and k-NN on the frozen features),
so its probe accuracy is what labels buy the same encoder at the same budget.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from representation import augment as augment_lib
from representation import common, networks
from representation import data as data_lib


@struct.dataclass
class Config(common.SSLConfig):
    """The supervised encoder (the fields it shares with the learners keep their meaning;
    the heads' sizes and the target fields are unused)."""


class State(NamedTuple):
    """Attributes: online: `{"encoder", "classifier"}` params; opt_state: AdamW's state;
    key: the training key."""

    online: Any
    opt_state: optax.OptState
    key: jax.Array


def _classes(config: Config) -> int:
    return data_lib.load(config.data).num_classes


def init(key: jax.Array, config: Config) -> State:
    encoder_key, classifier_key, key = jax.random.split(key, 3)
    image = jnp.zeros((2,) + data_lib.shape(config.data)[1:])
    online = {
        "encoder": networks.Encoder(config.channels, config.strides).init(encoder_key, image)[
            "params"
        ],
        "classifier": nn.Dense(_classes(config)).init(
            classifier_key, jnp.zeros((2, config.channels[-1]))
        )["params"],
    }
    return State(online, common.optimizer(config).init(online), key)


def loss_fn(online, images: jax.Array, labels: jax.Array, config: Config) -> jax.Array:
    """Mean cross-entropy of the classifier on the encoder's features of a batch."""
    features = networks.Encoder(config.channels, config.strides).apply(
        {"params": online["encoder"]}, images, "train"
    )
    logits = nn.Dense(_classes(config)).apply({"params": online["classifier"]}, features)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    key, index_key, view_key = jax.random.split(state.key, 3)
    index = jax.random.randint(index_key, (config.batch_size,), 0, config.probe_train)
    images = augment_lib.to_float(data_lib.gather(config.data, "train", index))
    images = augment_lib.augment_batch(view_key, images, config.augment, 0)
    labels = jnp.asarray(data_lib.labels(config.data, "train")[: config.probe_train])[index]
    loss, grads = jax.value_and_grad(loss_fn)(state.online, images, labels, config)
    updates, opt_state = common.optimizer(config).update(grads, state.opt_state, state.online)
    online = optax.apply_updates(state.online, updates)
    return State(online, opt_state, key), {"loss": loss}


evaluate = common.evaluate
units = common.units
