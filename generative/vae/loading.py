"""The VAE's data: the splits of a config, loaded once per process, and its epoch length."""

from __future__ import annotations

import functools

from generative import vae_data
from generative.vae.config import Config


@functools.lru_cache(maxsize=4)
def _dataset_cached(key: tuple) -> vae_data.TextData | vae_data.ImageData:
    data, path, n_train, n_val, n_test = key
    if data == "synthetic":
        return vae_data.synthetic(n_train, n_val, n_test)
    if data == "mnist":
        return vae_data.mnist_5k()
    if data == "text":
        return vae_data.load_text(f"{path}.train.txt", f"{path}.valid.txt", f"{path}.test.txt")
    if data == "images":
        return vae_data.load_image_file(path)
    raise ValueError(f"data must be synthetic, mnist, text or images; got {data!r}")


def dataset(config: Config) -> vae_data.TextData | vae_data.ImageData:
    """The data of `config` (numpy arrays, loaded or generated once per process)."""
    return _dataset_cached(
        (config.data, config.data_path, config.num_train, config.num_val, config.num_test)
    )


def epoch_iterations(config: Config) -> int:
    """Iterations per epoch: `config.epoch_iterations`, or one pass over the training set."""
    if config.epoch_iterations:
        return config.epoch_iterations
    return max(1, len(dataset(config).train) // config.batch_size)


def is_text(config: Config) -> bool:
    """Whether the data of `config` are token sequences (else binary images)."""
    return dataset(config).kind == "text"
