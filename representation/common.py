"""What BYOL and MoCo share: the config fields, the length of a run, the optimiser, batches
of two views, the evaluation, and the collapse signal."""

from __future__ import annotations

from typing import Literal, get_args

import jax
import jax.numpy as jnp
import optax
from flax import struct

import stabilizers
from representation import augment as augment_lib
from representation import data as data_lib
from representation import evaluation, networks

TargetTracker = Literal["schedule", "periodic"]


@struct.dataclass
class SSLConfig:
    """The fields of every learner of this family; each algorithm's `Config` extends it."""

    data: data_lib.DataSpec = struct.field(pytree_node=False, default=data_lib.DataSpec())
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
    """Hidden width of the heads (BYOL: 4096; MoCo v2: 2048, v3: 4096)."""
    projection_dim: int = struct.field(pytree_node=False, default=64)
    """Output width of the heads (BYOL: 256; MoCo v2: 128, v3: 256)."""
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
    augment: augment_lib.Augment = augment_lib.Augment()
    """Augmentation strengths."""
    target_tracker: TargetTracker = struct.field(pytree_node=False, default="schedule")
    """How the target follows the online network: "schedule" (`stabilizers.ema` with the
    algorithm's own momentum schedule) or "periodic"
    (`stabilizers.periodic(target_every, target_decay)`)."""
    target_every: int = 1
    """"periodic" target: the period N of its EMA steps (a leaf: a sweep is one program)."""
    target_decay: float = -1.0
    """"periodic" target: the decay of each step; negative: the algorithm's schedule at that
    step (a leaf). Decay 0 every update is no target: the online network behind a
    stop-gradient (SimSiam, for BYOL); decay 0 every N updates is a hard copy."""


TARGET_TRACKERS = get_args(TargetTracker)


SMOKE_SIZES = dict(
    data=data_lib.DataSpec(num_train=128, num_test=64),
    batch_size=32,
    total_steps=32 * 8,
    hidden_dim=32,
    projection_dim=16,
    probe_train=64,
    calibration=32,
)
"""The sizes of every learner's "smoke" preset: a run of a few seconds on a CPU."""


def target_decay_at(config: SSLConfig, schedule, count) -> jax.Array:
    """The decay of the target's step at update `count`: `schedule(count)`, or a "periodic"
    target's non-negative `target_decay`."""
    if config.target_tracker not in TARGET_TRACKERS:
        raise ValueError(
            f"target_tracker must be one of {TARGET_TRACKERS}; got {config.target_tracker!r}"
        )
    scheduled = schedule(count)
    if config.target_tracker == "schedule":
        return scheduled
    decay = config.target_decay
    return jnp.where(decay < 0, scheduled, jnp.asarray(decay, jnp.float32))


def periodic_target(config: SSLConfig, schedule, count) -> optax.GradientTransformation:
    """The "periodic" target's tracker at update `count`:
    `periodic(target_every, target_decay_at(count))`."""
    return stabilizers.periodic(config.target_every, target_decay_at(config, schedule, count))


def iterations(config: SSLConfig) -> int:
    """K, the number of training steps."""
    return max(1, config.total_steps // config.batch_size)


def units(config: SSLConfig) -> tuple[str, int]:
    """Progress is counted in training images: `batch_size` per step."""
    return "samples", config.batch_size


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """`x / max(||x||, sqrt(eps))`, as BYOL's `helpers.l2_normalize`."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps))


def normalized_std(z: jax.Array) -> jax.Array:
    """Mean over dimensions of the per-dimension std (over the batch) of l2-normalised `z`.

    The usual collapse signal (SimSiam, Chen & He 2021, section 4.1): 0 when every
    example maps to the same direction, about `1 / sqrt(d)` for isotropic embeddings.

    Args:
      z: `[B, d]` embeddings.
    """
    return jnp.mean(jnp.std(l2_normalize(z), axis=0))


def two_views(key: jax.Array, config: SSLConfig) -> tuple[jax.Array, jax.Array]:
    """`batch_size` training images (uniform, with replacement) in two augmented views."""
    index_key, view1_key, view2_key = jax.random.split(key, 3)
    num_train = data_lib.shape(config.data)[0]
    index = jax.random.randint(index_key, (config.batch_size,), 0, num_train)
    images = augment_lib.to_float(data_lib.gather(config.data, "train", index))
    view1 = augment_lib.augment_batch(view1_key, images, config.augment, 0)
    view2 = augment_lib.augment_batch(view2_key, images, config.augment, 1)
    return view1, view2


def optimizer(config: SSLConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay to 0 over the K steps; no weight decay on
    biases and batch-norm parameters (BYOL's `exclude_bias_and_norm`). `learning_rate` and
    `weight_decay` may be traced (swept)."""
    total = iterations(config)
    warmup = max(1, int(config.warmup_fraction * total))
    unit = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=1.0,
        warmup_steps=warmup,
        decay_steps=max(total, warmup + 1),
    )
    schedule = lambda count: config.learning_rate * unit(count)  # noqa: E731
    mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
    return optax.adamw(schedule, weight_decay=config.weight_decay, mask=mask)


def evaluate(state, config: SSLConfig, key: jax.Array) -> dict[str, jax.Array]:
    """Linear-probe and k-NN test accuracy of the online encoder's features
    (`state.online["encoder"]`), and their collapse signal `feature_std`."""
    del key  # the probes are deterministic
    encoder = networks.Encoder(config.channels, config.strides)
    spec = config.data
    train_x, test_x = evaluation.encoder_features(
        encoder,
        state.online["encoder"],
        spec,
        probe_train=config.probe_train,
        calibration=config.calibration,
    )
    train_y = jnp.asarray(data_lib.labels(spec, "train")[: config.probe_train])
    test_y = jnp.asarray(data_lib.labels(spec, "test"))
    num_classes = data_lib.load(spec).num_classes
    metrics = evaluation.probe_metrics(train_x, train_y, test_x, test_y, num_classes=num_classes)
    metrics["feature_std"] = normalized_std(test_x)
    return metrics
