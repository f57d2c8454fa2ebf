"""The image model: a small convolutional encoder and a PixelCNN decoder for 28 x 28 images.

OMNIGLOT's ResNet encoder and PixelCNN decoder of He et al. in miniature (van den Oord et
al., Pixel recurrent neural networks, 2016, for the masks).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from generative.vae.config import Config


def taps(k: int, kind: str) -> list[tuple[int, int]]:
    """The (row, column) offsets a k x k convolution sees: all of them (kind "full"), or
    a PixelCNN mask: the rows above and the pixels left of the centre ("A"), or up to and
    including the centre ("B")."""
    c = k // 2
    every = [(dy, dx) for dy in range(-c, c + 1) for dx in range(-c, c + 1)]
    if kind == "full":
        return every
    return [
        (dy, dx)
        for dy, dx in every
        if dy < 0 or (dy == 0 and (dx < 0 or (kind == "B" and dx == 0)))
    ]


def conv(x, w, b, offsets, stride=1):
    """A convolution of one image x [H, W, C] with zero padding, written as shifted copies
    and one matmul: w [len(offsets), C, C_out] holds only the taps at `offsets` (so a masked
    convolution costs what its unmasked taps cost). Output [H / stride, W / stride, C_out]."""
    h, wd, _ = x.shape
    p = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    xp = jnp.pad(x, ((p, p), (p, p), (0, 0)))
    cols = [xp[p + dy : p + dy + h : stride, p + dx : p + dx + wd : stride] for dy, dx in offsets]
    patches = jnp.concatenate(cols, axis=-1)
    return patches @ w.reshape(-1, w.shape[-1]) + b[None, None, :]


def he_normal(key, shape):
    """N(0, 2 / fan_in) weights, fan_in the product of all but the last axis."""
    fan_in = int(np.prod(shape[:-1]))
    return jax.random.normal(key, shape) * math.sqrt(2.0 / fan_in)


def init_params(key, config: Config):
    """(encoder, decoder) params."""
    nz, c, n = config.latent, config.channels, config.pixel_layers
    ks = jax.random.split(key, 8 + n)
    n_a, n_b = len(taps(config.pixel_kernel, "A")), len(taps(3, "B"))
    enc = {
        "c1": {"w": he_normal(ks[0], (9, 1, c // 2)), "b": jnp.zeros(c // 2)},
        "c2": {"w": he_normal(ks[1], (9, c // 2, c)), "b": jnp.zeros(c)},
        "out": {"w": he_normal(ks[2], (7 * 7 * c, 2 * nz)) * 0.1, "b": jnp.zeros(2 * nz)},
    }
    dec = {
        "z": {"w": he_normal(ks[3], (nz, 28 * 28 * 4)), "b": jnp.zeros(28 * 28 * 4)},
        "a": {"w": he_normal(ks[4], (n_a, 5, c)), "b": jnp.zeros(c)},
        "blocks": [{"w": he_normal(ks[8 + i], (n_b, c, c)), "b": jnp.zeros(c)} for i in range(n)],
        "h1": {"w": he_normal(ks[5], (1, c, c)), "b": jnp.zeros(c)},
        "h2": {"w": he_normal(ks[6], (1, c, 1)) * 0.1, "b": jnp.zeros(1)},
    }
    return enc, dec


def encode(enc, x):
    """q(z|x) of one image x [28, 28]: (mu [nz], logvar [nz])."""
    full = taps(3, "full")
    h = jax.nn.elu(conv(x[:, :, None], enc["c1"]["w"], enc["c1"]["b"], full, 2))  # 14 x 14
    h = jax.nn.elu(conv(h, enc["c2"]["w"], enc["c2"]["b"], full, 2))  # 7 x 7
    out = h.reshape(-1) @ enc["out"]["w"] + enc["out"]["b"]
    mu, logvar = jnp.split(out, 2)
    return mu, logvar


def image_logits(dec, x, z, config: Config):
    """Bernoulli logits [28, 28] of one image: a PixelCNN over x and 4 feature maps of z.

    z -> 4 maps of 28 x 28 (a linear layer) stacked with the image, a mask-A convolution,
    residual mask-B 3 x 3 blocks with dilations 1, 2, 4, ... (a receptive field of
    `pixel_kernel // 2 + 2^L - 1` rows above), two 1 x 1 layers. The logit of pixel (i, j)
    depends on z and on the pixels before (i, j) in raster order only, so the product of
    the pixels' Bernoullis is a normalised p(x|z).
    """
    zmap = (z @ dec["z"]["w"] + dec["z"]["b"]).reshape(28, 28, 4)
    h = jnp.concatenate([x[:, :, None], zmap], axis=2)
    h = jax.nn.elu(conv(h, dec["a"]["w"], dec["a"]["b"], taps(config.pixel_kernel, "A")))
    for i, blk in enumerate(dec["blocks"]):
        dilated = [(dy * 2**i, dx * 2**i) for dy, dx in taps(3, "B")]
        h = h + conv(jax.nn.elu(h), blk["w"], blk["b"], dilated)
    h = jax.nn.elu(conv(jax.nn.elu(h), dec["h1"]["w"], dec["h1"]["b"], [(0, 0)]))
    return conv(h, dec["h2"]["w"], dec["h2"]["b"], [(0, 0)])[:, :, 0]


def log_likelihood(dec, x, z, config: Config):
    """log p(x|z) of one binary image x [28, 28]: the sum of its pixels' Bernoulli terms."""
    logits = image_logits(dec, x, z, config)
    return jnp.sum(x * logits - jax.nn.softplus(logits))
