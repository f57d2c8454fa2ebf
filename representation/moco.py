"""MoCo v2 and v3: momentum contrast (He et al. CVPR 2020; Chen et al. 2020; Chen, Xie &
He, ICCV 2021).

A query encoder learns to pick the key of its own image, computed by a momentum (key)
encoder from another augmented view, out of many negatives, with the InfoNCE loss at
temperature T. The key encoder receives no gradient; it is an exponential moving
average of the query encoder and projector, `stabilizers.ema`:

- **v2** (`version="v2"`): a constant decay (`momentum`, the paper's m = 0.999), an MLP
  head without batch norm (2048 -> 2048 -> 128 in the paper), and a queue of the last
  `queue_size` keys as negatives. For each query q with positive key k+ (official
  `moco/builder.py`):

      logits = [q . k+, q . queue_1, ..., q . queue_K] / T,   L = CE(logits, 0),

  after which the batch's keys replace the oldest ones in the queue (first in, first
  out). The queue is part of the state pytree; its write position, the same for every
  seed, is a `stabilizers.SharedCount`. One device stands in for MoCo's shuffled batch
  norm as the official CIFAR demo does: the key batch is permuted and every batch norm
  normalises `bn_groups` sub-batches separately, so a query and its key never share
  batch statistics.
- **v3** (`version="v3"`): no queue; the other keys of the batch are the negatives. The
  decay follows BYOL's cosine schedule from `momentum` (0.99) to 1
  (`stabilizers.schedules.cosine_momentum`), the heads have batch norm (the projector
  also after its last layer, without affine parameters), a predictor sits on the query
  branch, and the loss is symmetrised and scaled by 2T (official
  `moco-v3/moco/builder.py`, `contrastive_loss`):

      L = ctr(q1, k2) + ctr(q2, k1),   ctr(q, k) = 2T CE(q k^T / T, arange(B)).

  The official code's default temperature is 1.0, which its ResNet-50 recipe keeps; its
  ViT recipe uses 0.2 (`CONFIG.md`).

Augmentations: v2 blurs both views with probability 0.5, as its official code does
(`augment.MOCO_V2`, in `PRESETS["v2"]`); v3 uses BYOL's asymmetric recipe (blur 1.0 and
0.1, the `Config` default), as the official `moco-v3` does. A `Config(version="v2")`
built by hand keeps that default unless it is given `augment=augment.MOCO_V2`.

With `target_tracker="periodic"` the key encoder follows `stabilizers.periodic(target_every,
target_decay)` instead (a constant decay or a hard copy).

Departures from the papers, for small images on a CPU: the conv encoder and small heads
of `representation.byol`, AdamW instead of SGD / LARS, the key encoder copied from the
query encoder at initialisation (as in both official codes).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import optax
from flax import struct

import stabilizers
from representation import augment, common, networks
from representation import data as data_lib

Version = Literal["v2", "v3"]
VERSIONS = get_args(Version)


@struct.dataclass
class Config(common.SSLConfig):
    """MoCo v2 / v3 on small images."""

    version: Version = struct.field(pytree_node=False, default="v3")
    """"v2" (queue of negatives, constant momentum) or "v3" (batch negatives, cosine)."""
    queue_size: int = struct.field(pytree_node=False, default=4096)
    """v2: number of negative keys in the queue (a multiple of batch_size)."""
    bn_groups: int = struct.field(pytree_node=False, default=4)
    """v2: sub-batches that batch norm normalises separately (shuffled BN on one device)."""
    momentum: float = 0.99
    """Key-encoder EMA decay: v2's constant m (paper: 0.999); v3's base of the cosine
    schedule to 1 (paper: 0.99)."""
    temperature: float = 0.2
    """InfoNCE temperature T (v2: 0.2; v3's official default 1.0, its ViT recipe 0.2)."""


class State(NamedTuple):
    """MoCo's training state.

    Attributes:
      online: the query branch: `{"encoder", "projector"}` (+ `"predictor"` for v3).
      target: the key encoder `{"encoder", "projector"}` (EMA of the online ones).
      opt_state: AdamW state of `online`.
      target_state: the target tracker's state.
      queue: v2: `[queue_size, projection_dim]` l2-normalised keys, oldest at
        `queue_ptr`; v3: None (no queue; an empty array would not checkpoint).
      queue_ptr: v2: where the next batch of keys is written (shared by all seeds).
      key: the training key.
    """

    online: Any
    target: Any
    opt_state: optax.OptState
    target_state: optax.OptState
    queue: jax.Array | None
    queue_ptr: stabilizers.SharedCount
    key: jax.Array


def _check(config: Config) -> None:
    if config.version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}; got {config.version!r}")
    if config.version == "v2":
        if config.queue_size % config.batch_size:
            raise ValueError(
                f"queue_size ({config.queue_size}) must be a multiple of batch_size "
                f"({config.batch_size}), as in MoCo's code"
            )
        if config.batch_size % config.bn_groups:
            raise ValueError(
                f"batch_size ({config.batch_size}) must be a multiple of bn_groups "
                f"({config.bn_groups})"
            )


def networks_of(config: Config) -> dict[str, Any]:
    """The modules: `encoder`, `projector` and, for v3, `predictor`."""
    if config.version == "v2":
        groups = config.bn_groups
        return {
            "encoder": networks.Encoder(config.channels, config.strides, bn_groups=groups),
            "projector": networks.ProjectionHead(
                config.hidden_dim, config.projection_dim, batch_norm=False
            ),
        }
    return {
        "encoder": networks.Encoder(config.channels, config.strides),
        "projector": networks.ProjectionHead(
            config.hidden_dim, config.projection_dim, last_bn=True
        ),
        "predictor": networks.ProjectionHead(config.hidden_dim, config.projection_dim),
    }


def momentum_schedule(config: Config):
    """The key encoder's decay: constant (v2) or cosine from `momentum` to 1 (v3)."""
    if config.version == "v2":
        return lambda count: jnp.asarray(config.momentum, jnp.float32)
    return stabilizers.schedules.cosine_momentum(config.momentum, common.iterations(config))


def _target_tx(config: Config, count) -> optax.GradientTransformation:
    if config.target_tracker == "periodic":
        return common.periodic_target(config, momentum_schedule(config), count)
    if config.version == "v2":
        return stabilizers.ema(config.momentum)
    return stabilizers.ema(momentum_schedule(config))


def init(key: jax.Array, config: Config) -> State:
    _check(config)
    encoder_key, projector_key, predictor_key, queue_key, key = jax.random.split(key, 5)
    nets = networks_of(config)
    batch = max(2, config.bn_groups * 2) if config.version == "v2" else 2
    image = jnp.zeros((batch,) + data_lib.shape(config.data)[1:])
    online = {
        "encoder": nets["encoder"].init(encoder_key, image)["params"],
        "projector": nets["projector"].init(projector_key, jnp.zeros((batch, config.channels[-1])))[
            "params"
        ],
    }
    if "predictor" in nets:
        online["predictor"] = nets["predictor"].init(
            predictor_key, jnp.zeros((batch, config.projection_dim))
        )["params"]
    target = {"encoder": online["encoder"], "projector": online["projector"]}
    queue = None
    if config.version == "v2":
        shape = (config.queue_size, config.projection_dim)
        queue = common.l2_normalize(jax.random.normal(queue_key, shape))
    return State(
        online=online,
        target=target,
        opt_state=common.optimizer(config).init(online),
        target_state=_target_tx(config, 0).init(target),
        queue=queue,
        queue_ptr=stabilizers.shared_count(),
        key=key,
    )


def enqueue(queue: jax.Array, ptr: jax.Array, keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Writes `keys` `[B, d]` over the oldest entries of `queue` `[K, d]` (first in, first
    out), at rows `ptr .. ptr + B - 1`; returns the queue and the next position
    `(ptr + B) mod K`. K must be a multiple of B, as in MoCo's `_dequeue_and_enqueue`."""
    size, batch = queue.shape[0], keys.shape[0]
    if size % batch:
        raise ValueError(f"queue size {size} is not a multiple of the batch {batch}")
    queue = jax.lax.dynamic_update_slice(queue, keys.astype(queue.dtype), (ptr, 0))
    return queue, (ptr + batch) % size


def infonce_loss(q: jax.Array, k_pos: jax.Array, negatives: jax.Array, temperature) -> jax.Array:
    """MoCo v2's InfoNCE loss for ONE query (He et al. 2020, eq. 1).

    `-log exp(q . k+ / T) / (exp(q . k+ / T) + sum_i exp(q . n_i / T))`, the
    cross-entropy of the logits `[q . k+, q . n_1, ...] / T` with the positive at 0.

    Args:
      q: `[d]` l2-normalised query.
      k_pos: `[d]` l2-normalised positive key (the caller stops its gradient).
      negatives: `[K, d]` l2-normalised negative keys.
      temperature: T.
    """
    if q.ndim != 1 or k_pos.shape != q.shape or negatives.shape[1:] != q.shape:
        raise ValueError(f"shapes {q.shape}, {k_pos.shape}, {negatives.shape} do not fit")
    logits = jnp.concatenate([jnp.dot(q, k_pos)[None], negatives @ q]) / temperature
    return -jax.nn.log_softmax(logits)[0]


def contrastive_loss(q: jax.Array, k: jax.Array, temperature) -> jax.Array:
    """MoCo v3's loss of a batch: `2T CE(q k^T / T, arange(B))`, averaged over queries.

    Args:
      q: `[B, d]` queries (normalised here).
      k: `[B, d]` keys (normalised here; the caller stops their gradient).
      temperature: T.
    """
    q, k = common.l2_normalize(q), common.l2_normalize(k)
    logits = q @ k.T / temperature
    nll = -jnp.diagonal(jax.nn.log_softmax(logits, axis=-1))
    return 2.0 * temperature * jnp.mean(nll)


def loss_fn(online, target, queue, view1, view2, permutation, config: Config):
    """MoCo's loss of a batch of two views, and diagnostics.

    Gradients flow into `online` only: the key branch sits behind `stop_gradient`.

    Args:
      online, target: the query and key branches' parameters.
      queue: v2's negatives `[K, d]`.
      view1, view2: the two views `[B, H, W, C]`.
      permutation: v2: the order in which the key batch meets batch norm.
      config: the config.

    Returns:
      `(loss, aux)`; `aux["keys"]` are v2's new keys for the queue.
    """
    nets = networks_of(config)
    target = jax.lax.stop_gradient(target)

    def branch(params, x):
        h = nets["encoder"].apply({"params": params["encoder"]}, x, "train")
        return h, nets["projector"].apply({"params": params["projector"]}, h, "train")

    if config.version == "v2":
        h1, z1 = branch(online, view1)
        q = common.l2_normalize(z1)
        _, k_shuffled = branch(target, view2[permutation])
        inverse = jnp.argsort(permutation)
        k = jax.lax.stop_gradient(common.l2_normalize(k_shuffled[inverse]))
        losses = jax.vmap(infonce_loss, in_axes=(0, 0, None, None))(q, k, queue, config.temperature)
        l_pos = jnp.sum(q * k, axis=-1)
        l_neg_max = jnp.max(q @ queue.T, axis=-1)
        accuracy = jnp.mean((l_pos > l_neg_max).astype(jnp.float32))
        return jnp.mean(losses), {"features": h1, "projection": z1, "keys": k, "acc": accuracy}

    def query(x):
        h, z = branch(online, x)
        return h, z, nets["predictor"].apply({"params": online["predictor"]}, z, "train")

    h1, z1, q1 = query(view1)
    _, _, q2 = query(view2)
    k1 = jax.lax.stop_gradient(branch(target, view1)[1])
    k2 = jax.lax.stop_gradient(branch(target, view2)[1])
    loss = contrastive_loss(q1, k2, config.temperature) + contrastive_loss(
        q2, k1, config.temperature
    )
    sims = common.l2_normalize(q1) @ common.l2_normalize(k2).T
    hits = jnp.argmax(sims, axis=-1) == jnp.arange(sims.shape[0])
    accuracy = jnp.mean(hits.astype(jnp.float32))
    return loss, {"features": h1, "projection": z1, "keys": k2, "acc": accuracy}


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    key, views_key, shuffle_key = jax.random.split(state.key, 3)
    view1, view2 = common.two_views(views_key, config)
    permutation = jax.random.permutation(shuffle_key, config.batch_size)
    # v3 updates the momentum encoder before computing its keys (moco-v3 builder.forward);
    # v2 inside its no_grad block before the keys too: same order here.
    count = state.target_state.count.value
    tx = _target_tx(config, count)
    decay = common.target_decay_at(config, momentum_schedule(config), count)
    sub = {"encoder": state.online["encoder"], "projector": state.online["projector"]}
    target, target_state = stabilizers.update_target(tx, sub, state.target, state.target_state)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.online, target, state.queue, view1, view2, permutation, config
    )
    updates, opt_state = common.optimizer(config).update(grads, state.opt_state, state.online)
    online = optax.apply_updates(state.online, updates)
    queue, ptr = state.queue, state.queue_ptr
    if config.version == "v2":
        queue, next_ptr = enqueue(state.queue, state.queue_ptr.value, aux["keys"])
        ptr = stabilizers.SharedCount(next_ptr)
    new = State(online, target, opt_state, target_state, queue, ptr, key)
    return new, {
        "loss": loss,
        "instance_accuracy": aux["acc"],
        "lag": stabilizers.lag(sub, target),
        "momentum": decay,
        "embedding_std": common.normalized_std(aux["features"]),
        "projection_std": common.normalized_std(aux["projection"]),
    }


evaluate = common.evaluate
"""Linear-probe and k-NN test accuracy of the query encoder's features."""

units = common.units

PRESETS = {
    "smoke": Config(**common.SMOKE_SIZES),
    "v2": Config(version="v2", augment=augment.MOCO_V2),
    "v3": Config(version="v3"),
}
"""Named configs. "smoke": a run of a few seconds on a CPU, to check an install; "v2" and
"v3": the two versions at this module's sizes, each with its paper's blur (v2: 0.5 on
both views; v3: BYOL's 1.0 and 0.1)."""
