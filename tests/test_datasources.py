"""datasources: the cache folder, the downloader and the readers, on small local files
written in the real formats (nothing here downloads)."""

import gzip
import os

import numpy as np
import pytest
from data_testing import write_cifar10, write_idx

import datasources


def test_cache_dir_is_the_environment_variable_or_the_home_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("STABILIZERS_DATA", str(tmp_path))
    assert datasources.cache_dir() == str(tmp_path)
    monkeypatch.delenv("STABILIZERS_DATA")
    assert datasources.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "stabilizers")


def test_mnist5k_is_mlxtends_digits_read_only():
    mnist = datasources.load_mnist5k()
    assert mnist.images.shape == (5000, 28, 28, 1) and mnist.images.dtype == np.uint8
    assert mnist.labels.dtype == np.int32
    assert np.bincount(mnist.labels).tolist() == [500] * 10
    assert not mnist.images.flags.writeable and datasources.load_mnist5k() is mnist


def test_mnist_reader_reads_idx_files(tmp_path):
    digits = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", digits)
    got = datasources.load_mnist(str(tmp_path), download=False)
    np.testing.assert_array_equal(got, digits[..., None])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="download=True"):
        datasources.load_mnist(str(empty), download=False)
    (empty / "bad.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="not an IDX"):
        datasources.read_idx(str(empty / "bad.gz"))


def test_cifar10_reader_reads_the_python_batches_in_order(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, (6, 3))
    write_cifar10(tmp_path / "cifar-10-python.tar.gz", images, labels)
    ds = datasources.load_cifar10(str(tmp_path), download=False)
    np.testing.assert_array_equal(ds.train.images, images[:5].reshape(15, 32, 32, 3))
    np.testing.assert_array_equal(ds.test.images, images[5])
    assert ds.train.labels.tolist() == labels[:5].ravel().tolist()
    assert ds.train.labels.dtype == np.int32 and ds.num_classes == 10


def test_fetch_downloads_once_and_fails_clearly_when_offline(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    dest = tmp_path / "cache"
    missing = (tmp_path / "nowhere.bin").as_uri()
    path = datasources.fetch("file.bin", [missing, source.as_uri()], str(dest))
    assert open(path, "rb").read() == b"payload" and sorted(os.listdir(dest)) == ["file.bin"]
    source.unlink()
    assert datasources.fetch("file.bin", [missing], str(dest)) == path  # kept, not fetched
    with pytest.raises(datasources.DownloadError, match="offline") as error:
        datasources.fetch("other.bin", [missing], str(dest))
    assert isinstance(error.value, OSError) and "STABILIZERS_DATA" in str(error.value)
    assert sorted(os.listdir(dest)) == ["file.bin"]  # no partial file left
