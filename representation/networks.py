"""Networks of the self-supervised learners: a small conv encoder and projection heads.

Written for the harness, which `vmap`s a whole training step over seeds and swept
hyperparameters. Two consequences:

- `Conv3x3` is a 3 x 3 convolution written as nine strided slices concatenated along the
  channels and one matrix product. Under `vmap` over per-seed weights that is one batched
  matrix product, where `lax.conv_general_dilated` turns into a grouped convolution,
  which XLA's CPU backend runs much slower than the same convolutions one seed at a time.
- `BatchNorm` normalises with the statistics of the batch it is given, inside each
  vmapped seed, so every seed has its own batch statistics. There are no running
  averages in the training state: evaluation calibrates the statistics once on a fixed
  batch of training images (`mode="calibrate"`, the "precise BN" of Wu & Johnson 2021)
  and then normalises every image with them (`mode="eval"`). Its `groups` option
  normalises `groups` sub-batches separately: MoCo's shuffled BN on one device.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

MODES = ("train", "calibrate", "eval")


class BatchNorm(nn.Module):
    """Batch normalisation over every axis but the last, without running averages.

    Modes: "train" normalises each of `groups` consecutive sub-batches with its own
    statistics; "calibrate" normalises with the whole batch's statistics and stores them
    in the `batch_stats` collection (make it mutable); "eval" normalises with the stored
    statistics.

    Attributes:
      groups: number of sub-batches normalised separately in "train" mode.
      use_affine: learn a scale and an offset after the normalisation.
      epsilon: added to the variance.
    """

    groups: int = 1
    use_affine: bool = True
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: jax.Array, mode: str) -> jax.Array:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
        features = x.shape[-1]
        row = lambda v: jnp.reshape(v, (1,) * (x.ndim - 1) + (features,))  # noqa: E731
        if mode != "train":  # the statistics exist only once calibrated
            mean_v = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
            var_v = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        if mode == "eval":
            y = (x - row(mean_v.value)) * row(jax.lax.rsqrt(var_v.value + self.epsilon))
        elif mode == "calibrate":
            flat = x.reshape(-1, features)
            mean, var = jnp.mean(flat, axis=0), jnp.var(flat, axis=0)
            mean_v.value, var_v.value = mean, var
            y = (x - row(mean)) * row(jax.lax.rsqrt(var + self.epsilon))
        else:
            if x.shape[0] % self.groups:
                raise ValueError(f"batch {x.shape[0]} is not divisible by groups={self.groups}")
            g = x.reshape(self.groups, -1, features)
            mean = jnp.mean(g, axis=1, keepdims=True)
            var = jnp.var(g, axis=1, keepdims=True)
            y = ((g - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
        if self.use_affine:
            y = y * row(self.param("scale", nn.initializers.ones, (features,)))
            y = y + row(self.param("bias", nn.initializers.zeros, (features,)))
        return y


def shifted_patches(x: jax.Array, stride: int) -> jax.Array:
    """The 3 x 3 neighbourhoods of `x` `[B, H, W, C]` ("SAME" padding) as
    `[B, ceil(H / stride), ceil(W / stride), 9 C]`, offsets (dy, dx) in row-major order."""
    b, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ho, wo = -(-h // stride), -(-w // stride)
    slices = [
        jax.lax.slice(
            padded,
            (0, dy, dx, 0),
            (b, dy + (ho - 1) * stride + 1, dx + (wo - 1) * stride + 1, c),
            (1, stride, stride, 1),
        )
        for dy in range(3)
        for dx in range(3)
    ]
    return jnp.concatenate(slices, axis=-1)


class Conv3x3(nn.Module):
    """3 x 3 convolution, "SAME" padding, no bias (a batch norm follows).

    Equals `lax.conv_general_dilated` with the kernel `kernel.reshape(3, 3, C, features)`
    (HWIO), computed as patches times a matrix so that it stays a matrix product under
    `vmap` over weights.
    """

    features: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", nn.initializers.he_normal(), (9 * x.shape[-1], self.features), jnp.float32
        )
        return shifted_patches(x, self.stride) @ kernel


class Encoder(nn.Module):
    """Conv -> BN -> ReLU blocks, then global average pooling: `[B, H, W, C] -> [B, D]`.

    Attributes:
      channels: output channels of each block; D is the last.
      strides: stride of each block.
      bn_groups: `BatchNorm.groups` in "train" mode.
    """

    channels: Sequence[int] = (32, 32, 64, 64)
    strides: Sequence[int] = (2, 1, 2, 2)
    bn_groups: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, mode: str = "train") -> jax.Array:
        if len(self.channels) != len(self.strides):
            raise ValueError(
                f"channels {self.channels} and strides {self.strides} differ in length"
            )
        h = x
        for c, s in zip(self.channels, self.strides, strict=True):
            h = Conv3x3(c, s)(h)
            h = nn.relu(BatchNorm(groups=self.bn_groups)(h, mode))
        return jnp.mean(h, axis=(1, 2))


class ProjectionHead(nn.Module):
    """Linear -> [BN] -> ReLU -> ... -> Linear: the projector and predictor heads.

    BYOL (Grill et al. 2020) uses one hidden layer with batch norm and a last layer
    without bias or norm; MoCo v2 (Chen et al. 2020) drops the batch norm; MoCo v3
    (Chen, Xie & He 2021) adds a batch norm without affine parameters after the last
    layer of its projector.

    Attributes:
      hidden: width of the hidden layer(s).
      out: output width.
      layers: number of linear layers (>= 1).
      batch_norm: batch norm after each hidden linear layer.
      last_bn: batch norm without scale or offset after the last layer.
      bn_groups: `BatchNorm.groups` in "train" mode.
    """

    hidden: int
    out: int
    layers: int = 2
    batch_norm: bool = True
    last_bn: bool = False
    bn_groups: int = 1

    @nn.compact
    def __call__(self, x: jax.Array, mode: str = "train") -> jax.Array:
        h = x
        for _ in range(self.layers - 1):
            h = nn.Dense(self.hidden, use_bias=not self.batch_norm)(h)
            if self.batch_norm:
                h = BatchNorm(groups=self.bn_groups)(h, mode)
            h = nn.relu(h)
        h = nn.Dense(self.out, use_bias=False)(h)
        if self.last_bn:
            h = BatchNorm(groups=self.bn_groups, use_affine=False)(h, mode)
        return h
