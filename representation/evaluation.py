"""Evaluation of frozen representations: linear-probe and k-NN accuracy, and baselines.

Both probes train on features of training images and are scored on held-out test
images, without augmentation. Everything is pure and jit-able, so the harness evaluates
every seed and sweep point in one vmapped call.

- Linear probe: multinomial logistic regression on standardised features (mean and
  standard deviation of the training features), L2 penalty `l2`, fitted by L-BFGS
  (`optax.lbfgs`) for a fixed number of iterations from zero weights. A convex problem
  with a deterministic solver: the accuracy measures the features, not the probe's
  optimiser. (MoCo's and BYOL's protocols train the probe by SGD with augmentation for
  80-100 epochs.)
- k-NN: the weighted vote of InstDisc (Wu et al. 2018), as in the MoCo CIFAR demo and
  DINO's `eval_knn.py`: cosine similarity between l2-normalised features, the top `k`
  training neighbours each vote for their label with weight `exp(sim / temperature)`.
- Baselines: the same probes on raw pixels (`pixel_baselines`); the random-encoder
  baseline is the learner's own evaluation at initialisation (the harness evaluates
  iteration 0 before training).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from representation import data as data_lib
from representation import networks
from representation.augment import to_float


def linear_probe_accuracy(
    train_x: jax.Array,
    train_y: jax.Array,
    test_x: jax.Array,
    test_y: jax.Array,
    *,
    num_classes: int,
    l2: float = 1e-3,
    iterations: int = 100,
) -> jax.Array:
    """Test accuracy of an L2-regularised softmax regression fitted on `train_x`.

    Args:
      train_x: `[N, D]` training features.
      train_y: `[N]` int labels.
      test_x: `[M, D]` test features.
      test_y: `[M]` int labels.
      num_classes: number of classes.
      l2: weight of `0.5 * ||W||^2` (on standardised features; the bias is free).
      iterations: L-BFGS iterations.

    Returns:
      A float32 scalar in [0, 1].
    """
    mean = jnp.mean(train_x, axis=0, keepdims=True)
    std = jnp.std(train_x, axis=0, keepdims=True) + 1e-6
    xs, xt = (train_x - mean) / std, (test_x - mean) / std
    onehot = jax.nn.one_hot(train_y, num_classes)

    def loss(params):
        logits = xs @ params["w"] + params["b"][None]
        ce = jnp.mean(optax.softmax_cross_entropy(logits, onehot))
        return ce + 0.5 * l2 * jnp.sum(jnp.square(params["w"]))

    params = {
        "w": jnp.zeros((xs.shape[1], num_classes), xs.dtype),
        "b": jnp.zeros((num_classes,), xs.dtype),
    }
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def body(carry, _):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = jax.lax.scan(body, (params, solver.init(params)), None, length=iterations)
    predictions = jnp.argmax(xt @ params["w"] + params["b"][None], axis=-1)
    return jnp.mean((predictions == test_y).astype(jnp.float32))


def knn_accuracy(
    train_x: jax.Array,
    train_y: jax.Array,
    test_x: jax.Array,
    test_y: jax.Array,
    *,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> jax.Array:
    """Test accuracy of the weighted k-nearest-neighbour vote on cosine similarity.

    Args:
      train_x, train_y, test_x, test_y: features `[N, D]`, `[M, D]` and int labels.
      num_classes: number of classes.
      k: number of neighbours (DINO: 20).
      temperature: vote weight `exp(sim / temperature)` (DINO: 0.07).

    Returns:
      A float32 scalar in [0, 1].
    """
    normalise = lambda x: x * jax.lax.rsqrt(jnp.sum(x * x, -1, keepdims=True) + 1e-12)  # noqa: E731
    bank = normalise(train_x)

    def one(query, label):
        sims = bank @ query
        top, index = jax.lax.top_k(sims, k)
        weights = jnp.exp(top / temperature)
        votes = jax.nn.one_hot(train_y[index], num_classes).T @ weights
        return (jnp.argmax(votes) == label).astype(jnp.float32)

    return jnp.mean(jax.lax.map(lambda qy: one(*qy), (normalise(test_x), test_y), batch_size=256))


def probe_metrics(train_x, train_y, test_x, test_y, *, num_classes: int) -> dict[str, jax.Array]:
    """`{"linear_probe": ..., "knn": ...}` accuracies of features (default settings)."""
    return {
        "linear_probe": linear_probe_accuracy(
            train_x, train_y, test_x, test_y, num_classes=num_classes
        ),
        "knn": knn_accuracy(train_x, train_y, test_x, test_y, num_classes=num_classes),
    }


def encoder_features(
    encoder: networks.Encoder,
    params,
    spec: data_lib.DataSpec,
    *,
    probe_train: int,
    calibration: int,
    chunk: int = 500,
) -> tuple[jax.Array, jax.Array]:
    """Features of the first `probe_train` training images and of all test images.

    Batch-norm statistics come from the first `calibration` training images
    (`networks.BatchNorm`'s "calibrate" mode); then every image is mapped in "eval" mode,
    `chunk` images at a time.

    Returns:
      `(train_features [probe_train, D], test_features [M, D])`.
    """
    num_test = len(data_lib.labels(spec, "test"))
    calib_images = to_float(data_lib.gather(spec, "train", jnp.arange(calibration)))
    _, stats = encoder.apply({"params": params}, calib_images, "calibrate", mutable=["batch_stats"])

    def features(split, n):
        def one_chunk(index):
            images = to_float(data_lib.gather(spec, split, index))
            return encoder.apply({"params": params, **stats}, images, "eval")

        index = jnp.arange(-(-n // chunk) * chunk).reshape(-1, chunk) % n
        return jax.lax.map(one_chunk, index).reshape(-1, encoder.channels[-1])[:n]

    return features("train", probe_train), features("test", num_test)


def pixel_baselines(spec: data_lib.DataSpec, *, probe_train: int) -> dict[str, float]:
    """Linear-probe and k-NN accuracy on raw pixels (flattened, in [0, 1])."""
    ds = data_lib.load(spec)
    train_x = ds.train.images[:probe_train].reshape(probe_train, -1) / 255.0
    test_x = ds.test.images.reshape(len(ds.test.images), -1) / 255.0
    metrics = jax.jit(probe_metrics, static_argnames="num_classes")(
        jnp.asarray(train_x, jnp.float32),
        jnp.asarray(ds.train.labels[:probe_train]),
        jnp.asarray(test_x, jnp.float32),
        jnp.asarray(ds.test.labels),
        num_classes=ds.num_classes,
    )
    return {name: float(np.asarray(v)) for name, v in metrics.items()}
