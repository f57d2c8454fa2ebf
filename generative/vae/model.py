"""The VAE of a config: the text model on token sequences, the image model on images."""

from __future__ import annotations

from generative.vae import image, text
from generative.vae.config import Config
from generative.vae.loading import dataset, is_text


def init_params(key, config: Config):
    """(encoder, decoder) params of the model the data of `config` calls for."""
    data = dataset(config)
    if data.kind == "text":
        return text.init_params(key, config, data.vocab_size)
    return image.init_params(key, config)


def encode(enc, x, config: Config):
    """(mu, logvar) of q(z|x) for one example."""
    return text.encode(enc, x, config) if is_text(config) else image.encode(enc, x)


def log_likelihood(dec, x, z, key, config: Config, train: bool = False):
    """log p(x|z) for one example (dropout when `train`; the image model has none)."""
    if is_text(config):
        return text.log_likelihood(dec, x, z, key, config, train)
    return image.log_likelihood(dec, x, z, config)
