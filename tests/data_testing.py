"""Small files in the published formats of the data sets, for the loaders' tests."""

import gzip
import io
import pickle
import tarfile

import numpy as np


def write_idx(path, array):
    """An IDX file (MNIST's format), gzipped, of uint8 `array`."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def write_cifar10(path, images, labels):
    """`cifar-10-python.tar.gz` at `path`: `images` uint8 [6, N, 32, 32, 3] and `labels`
    [6, N] become data_batch_1..5 and test_batch (channel-major rows, as published)."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    with tarfile.open(path, "w:gz") as tar:
        for name, x, y in zip(names, images, labels, strict=True):
            rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
            blob = pickle.dumps({b"data": rows, b"labels": [int(v) for v in y]})
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
