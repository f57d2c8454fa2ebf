"""Networks F(x, c_noise) for consistency models: a residual MLP for 2-D data, a small U-Net.

Both take the scaled input `c_in(t) x` and the noise input `c_noise(t) = 0.25 ln t`
(the authors' code) and embed the latter:

- "fourier": Gaussian Fourier features `[sin(2 pi c W), cos(2 pi c W)]`, `W ~ N(0, s^2)`
  frozen at init (the CIFAR-10 code: s = 16; improved CT lowers it to 0.02);
- "positional": the sinusoidal embedding of `1000 c` (the ImageNet code);
- "raw": c itself, no embedding.

The embedding is followed by a two-layer MLP and added inside every block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

EMBEDDINGS = ("fourier", "positional", "raw")


class NoiseEmbedding(nn.Module):
    """Embeds the scalar noise input `c` as a vector of size `dim`."""

    dim: int
    kind: str = "fourier"
    fourier_scale: float = 16.0

    @nn.compact
    def __call__(self, c: jax.Array) -> jax.Array:
        c = jnp.asarray(c, jnp.float32)
        half = self.dim // 2
        if self.kind == "fourier":
            w = self.param(
                "fourier_w", lambda k, s: self.fourier_scale * jax.random.normal(k, s), (half,)
            )
            w = jax.lax.stop_gradient(w)  # frozen: a fixed random projection
            angle = 2 * jnp.pi * c[..., None] * w.reshape((1,) * c.ndim + (half,))
            emb = jnp.concatenate([jnp.sin(angle), jnp.cos(angle)], axis=-1)
        elif self.kind == "positional":
            freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half, dtype=jnp.float32) / half)
            angle = 1000.0 * c[..., None] * freqs.reshape((1,) * c.ndim + (half,))
            emb = jnp.concatenate([jnp.cos(angle), jnp.sin(angle)], axis=-1)
        elif self.kind == "raw":
            emb = c[..., None]
        else:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}; got {self.kind!r}")
        emb = nn.silu(nn.Dense(self.dim)(emb))
        return nn.Dense(self.dim)(emb)


class ResidualMLP(nn.Module):
    """A residual MLP for vectors: `depth` blocks of width `width`, the noise added in each.

    Input `x` is `[..., d]`, `c_noise` is `[...]`; the output has the shape of `x`. The last
    layer starts at zero, so that F = 0 at init. With `layer_norm`, each block's hidden
    dense layer is followed by a LayerNorm before its activation (PQN's placement, Gallici
    et al. 2024), beside the pre-norms of the residual stream.
    """

    width: int = 256
    depth: int = 4
    embedding: str = "fourier"
    fourier_scale: float = 16.0
    dropout: float = 0.0
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array, *, train: bool = False) -> jax.Array:
        emb = NoiseEmbedding(self.width, self.embedding, self.fourier_scale)(c_noise)
        h = nn.Dense(self.width)(x)
        for _ in range(self.depth):
            y = nn.silu(nn.LayerNorm()(h))
            y = nn.Dense(self.width)(y) + nn.Dense(self.width)(nn.silu(emb))
            if self.layer_norm:
                y = nn.LayerNorm()(y)
            y = nn.silu(y)
            y = nn.Dropout(self.dropout, deterministic=not train)(y)
            h = h + nn.Dense(self.width)(y)
        h = nn.silu(nn.LayerNorm()(h))
        return nn.Dense(x.shape[-1], kernel_init=nn.initializers.zeros)(h)


class ResBlock(nn.Module):
    channels: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, emb, train: bool):
        groups = min(8, x.shape[-1])
        h = nn.silu(nn.GroupNorm(num_groups=groups)(x))
        h = nn.Conv(self.channels, (3, 3))(h)
        h = h + nn.Dense(self.channels)(nn.silu(emb))[..., None, None, :]
        h = nn.silu(nn.GroupNorm(num_groups=min(8, self.channels))(h))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Conv(self.channels, (3, 3))(h)
        if x.shape[-1] != self.channels:
            x = nn.Conv(self.channels, (1, 1))(x)
        return x + h


class UNet(nn.Module):
    """A small U-Net for images `[..., H, W, C]`: one residual block per resolution.

    `channels[i]` is the width at resolution `H / 2^i`; H and W must be divisible by
    `2^(len(channels) - 1)` (8x8 digits: two levels; 28x28 MNIST: three; 32x32 CIFAR-10:
    three). The output starts at zero.
    """

    channels: Sequence[int] = (32, 64, 64)
    embedding: str = "fourier"
    fourier_scale: float = 16.0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array, *, train: bool = False) -> jax.Array:
        unbatched = x.ndim == 3
        if unbatched:
            x, c_noise = x[None], jnp.asarray(c_noise)[None]
        emb_dim = 4 * self.channels[0]
        emb = NoiseEmbedding(emb_dim, self.embedding, self.fourier_scale)(c_noise)
        h = nn.Conv(self.channels[0], (3, 3))(x)
        skips = []
        for i, ch in enumerate(self.channels):
            h = ResBlock(ch, self.dropout)(h, emb, train)
            skips.append(h)
            if i < len(self.channels) - 1:
                h = nn.Conv(self.channels[i + 1], (3, 3), strides=(2, 2))(h)
        h = ResBlock(self.channels[-1], self.dropout)(h, emb, train)
        for i in reversed(range(len(self.channels))):
            if i < len(self.channels) - 1:
                n, hh, ww, c = h.shape
                h = jax.image.resize(h, (n, 2 * hh, 2 * ww, c), "nearest")
                h = nn.Conv(self.channels[i], (3, 3))(h)
            h = ResBlock(self.channels[i], self.dropout)(
                jnp.concatenate([h, skips[i]], axis=-1), emb, train
            )
        h = nn.silu(nn.GroupNorm(num_groups=min(8, h.shape[-1]))(h))
        out = nn.Conv(x.shape[-1], (3, 3), kernel_init=nn.initializers.zeros)(h)
        return out[0] if unbatched else out


class Classifier(nn.Module):
    """A small digit classifier whose penultimate layer gives the Frechet features."""

    features: int = 64
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = nn.relu(nn.Conv(32, (3, 3))(x))
        h = nn.avg_pool(h, (2, 2), (2, 2)) if h.shape[-2] > 8 else h
        h = nn.relu(nn.Conv(64, (3, 3))(h))
        h = nn.avg_pool(h, (2, 2), (2, 2))
        h = h.reshape(h.shape[:-3] + (-1,))
        feats = nn.relu(nn.Dense(self.features)(h))
        return feats, nn.Dense(self.num_classes)(feats)
