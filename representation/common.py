"""Pieces BYOL and MoCo share: batches of two views, the optimiser, collapse signals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from representation import augment as augment_lib
from representation import data as data_lib
from representation import evaluation, networks


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


def two_views(
    key: jax.Array,
    spec: data_lib.DataSpec,
    batch_size: int,
    params: augment_lib.Augment,
) -> tuple[jax.Array, jax.Array]:
    """A batch of training images (uniform, with replacement) in two augmented views."""
    index_key, view1_key, view2_key = jax.random.split(key, 3)
    num_train = data_lib.shape(spec)[0]
    index = jax.random.randint(index_key, (batch_size,), 0, num_train)
    images = augment_lib.to_float(data_lib.gather(spec, "train", index))
    view1 = augment_lib.augment_batch(view1_key, images, params, 0)
    view2 = augment_lib.augment_batch(view2_key, images, params, 1)
    return view1, view2


def optimizer(
    learning_rate, weight_decay, total_iterations: int, warmup_fraction: float
) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay to 0; no weight decay on biases and
    batch-norm parameters (BYOL's `exclude_bias_and_norm`). `learning_rate` and
    `weight_decay` may be traced (swept)."""
    warmup = max(1, int(warmup_fraction * total_iterations))
    unit = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=1.0,
        warmup_steps=warmup,
        decay_steps=max(total_iterations, warmup + 1),
    )
    schedule = lambda count: learning_rate * unit(count)  # noqa: E731
    mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
    return optax.adamw(schedule, weight_decay=weight_decay, mask=mask)


def evaluate_encoder(
    encoder: networks.Encoder, params, spec: data_lib.DataSpec, probe_train: int, calibration: int
) -> dict[str, jax.Array]:
    """Linear-probe and k-NN accuracy of an encoder's features, and their collapse signal."""
    train_x, test_x = evaluation.encoder_features(
        encoder, params, spec, probe_train=probe_train, calibration=calibration
    )
    train_y = jnp.asarray(data_lib.labels(spec, "train")[:probe_train])
    test_y = jnp.asarray(data_lib.labels(spec, "test"))
    num_classes = data_lib.load(spec).num_classes
    metrics = evaluation.probe_metrics(train_x, train_y, test_x, test_y, num_classes=num_classes)
    metrics["feature_std"] = normalized_std(test_x)
    return metrics
