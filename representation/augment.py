"""Image augmentations: pure, jit-able, per-example random functions.

`augment(key, image, params, view)` maps ONE float image `[H, W, C]` in [0, 1] to a
random view of it; the result depends on `key` only (and the image), so the same key
gives the same view and callers `vmap` over a batch of keys. The recipe is BYOL's
(Grill et al. 2020, appendix B; the official `byol/utils/augmentations.py`), scaled
down to small images:

1. a random resized crop (area fraction U[crop_min_scale, 1], aspect ratio
   log-uniform in [3/4, 4/3]) combined with a rotation by U[-rotation, rotation] degrees,
   one bilinear affine warp (`dm_pix.affine_transform`), outside pixels black;
2. a horizontal flip with probability `flip_prob` (0 for digits: a mirrored 2 is no 2);
3. with probability `jitter_prob`: brightness (additive, U[-brightness, brightness]),
   contrast (factor U[1 - contrast, 1 + contrast]) and, for colour images, saturation and
   hue (dm-pix's `random_*` functions), each followed by a clip to [0, 1];
4. for colour images, grayscale with probability `grayscale_prob`;
5. a Gaussian blur with probability `blur_prob[view]` (sigma U[0.1, blur_sigma]);
6. solarisation with probability `solarize_prob[view]`;
7. additive Gaussian pixel noise of standard deviation U[0, noise_std], then a clip.

BYOL's two views differ in 5 and 6: blur with probability 1.0 and 0.1, solarisation
with probability 0.0 and 0.2 (the default `Augment()`). MoCo v2 blurs both views alike,
with probability 0.5 (`MOCO_V2`; the official `main_moco.py`, `--aug-plus`:
`RandomApply([GaussianBlur([.1, 2.])], p=0.5)` in the one transform of both crops).
Solarisation is off by default here: it maps the white strokes of a digit on black to
black, erasing the digit. Every probability is a
`jnp.where` on a uniform draw, so under `vmap` both branches run (these ops are cheap)
and nothing branches on data.
"""

from __future__ import annotations

import math

import dm_pix
import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Augment:
    """Strengths of the augmentations (pytree leaves: a sweep may vmap over them)."""

    crop_min_scale: float = 0.3
    """Smallest area fraction of the random resized crop."""
    rotation: float = struct.field(pytree_node=False, default=0.0)
    """Largest random rotation, in degrees (0: none; a gather-based warp, costly on CPU)."""
    flip_prob: float = 0.0
    """Probability of a horizontal flip (0.5 for natural images, 0 for digits)."""
    jitter_prob: float = 0.8
    """Probability of the colour / intensity jitter."""
    brightness: float = 0.4
    """Largest additive brightness change."""
    contrast: float = 0.4
    """Contrast factor in [1 - contrast, 1 + contrast]."""
    saturation: float = 0.2
    """Saturation factor in [1 - saturation, 1 + saturation] (colour images)."""
    hue: float = 0.1
    """Largest hue shift (colour images)."""
    grayscale_prob: float = 0.2
    """Probability of converting to grayscale (colour images)."""
    blur_sigma: float = 1.0
    """Largest blur standard deviation, in pixels."""
    noise_std: float = 0.1
    """Largest standard deviation of the additive pixel noise."""
    blur_prob: tuple[float, float] = (1.0, 0.1)
    """Probability of the blur in view 1 and view 2 (BYOL: 1.0, 0.1)."""
    solarize_prob: tuple[float, float] = (0.0, 0.0)
    """Probability of solarisation in view 1 and view 2 (BYOL: 0.0, 0.2; off for digits)."""


MOCO_V2 = Augment(blur_prob=(0.5, 0.5))
"""MoCo v2's recipe (Chen, Fan, Girshick & He 2020): BYOL's, but a blur with probability
0.5 on both views. The blur's sigma range stays scaled to small images (`blur_sigma`)."""


def _interpolation_matrix(size: int, start, length) -> jax.Array:
    """`[size, size]` bilinear weights that resample the input interval
    `[start, start + length)` (in pixels) onto `size` output pixels."""
    centres = start + (jnp.arange(size) + 0.5) * (length / size) - 0.5  # input coordinates
    return jnp.maximum(0.0, 1.0 - jnp.abs(centres[:, None] - jnp.arange(size)[None, :]))


def random_resized_crop(key: jax.Array, image: jax.Array, min_scale) -> jax.Array:
    """A random crop of area fraction U[min_scale, 1] and aspect ratio log-uniform in
    [3/4, 4/3], resized back to the image's size by bilinear interpolation.

    Separable: two small matrix products per image (`Wy @ image @ Wx^T`), which stay
    matrix products under `vmap`.
    """
    h, w = image.shape[0], image.shape[1]
    area_key, ratio_key, y_key, x_key = jax.random.split(key, 4)
    area = jax.random.uniform(area_key, (), minval=min_scale, maxval=1.0)
    log_ratio = jax.random.uniform(ratio_key, (), minval=math.log(3 / 4), maxval=math.log(4 / 3))
    ratio = jnp.exp(log_ratio)
    crop_h = jnp.minimum(jnp.sqrt(area / ratio), 1.0) * h
    crop_w = jnp.minimum(jnp.sqrt(area * ratio), 1.0) * w
    y0 = jax.random.uniform(y_key, (), minval=0.0, maxval=h - crop_h)
    x0 = jax.random.uniform(x_key, (), minval=0.0, maxval=w - crop_w)
    wy = _interpolation_matrix(h, y0, crop_h)
    wx = _interpolation_matrix(w, x0, crop_w)
    return jnp.einsum("yi,ijc,xj->yxc", wy, image, wx)


def rotate(key: jax.Array, image: jax.Array, max_degrees: float) -> jax.Array:
    """A rotation by U[-max_degrees, max_degrees] about the centre (`dm_pix.rotate`,
    bilinear, outside pixels black)."""
    angle = jnp.deg2rad(jax.random.uniform(key, (), minval=-1.0, maxval=1.0) * max_degrees)
    return dm_pix.rotate(image, angle, order=1, mode="constant", cval=0.0)


def gaussian_blur(image: jax.Array, sigma) -> jax.Array:
    """A separable Gaussian blur of standard deviation `sigma` (pixels, may be traced),
    kernel truncated at 3 sigma, renormalised at the borders ("SAME" with reflection of
    the weights' mass onto the image); two matrix products per image."""

    def matrix(n):
        d = jnp.arange(n)[:, None] - jnp.arange(n)[None, :]
        k = jnp.exp(-0.5 * jnp.square(d / sigma)) * (jnp.abs(d) <= 3 * sigma + 0.5)
        return k / jnp.sum(k, axis=1, keepdims=True)

    return jnp.einsum("yi,ijc,xj->yxc", matrix(image.shape[0]), image, matrix(image.shape[1]))


def augment(key: jax.Array, image: jax.Array, params: Augment, view: int) -> jax.Array:
    """One random view of one image (see the module docstring for the recipe).

    Args:
      key: the view's key; the same key gives the same view.
      image: float `[H, W, C]` in [0, 1], C = 1 or 3.
      params: augmentation strengths.
      view: 0 or 1, which of the two views (a Python int: it picks probabilities).

    Returns:
      float `[H, W, C]` in [0, 1].
    """
    if view not in (0, 1):
        raise ValueError(f"view must be 0 or 1; got {view!r}")
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"augment takes one [H, W, C] image with C in (1, 3); got {image.shape}")
    colour = image.shape[-1] == 3
    keys = jax.random.split(key, 14)
    gate = lambda k, p: jax.random.uniform(k, ()) < p  # noqa: E731

    x = random_resized_crop(keys[0], image, params.crop_min_scale)
    if params.rotation > 0:
        x = rotate(keys[12], x, params.rotation)
    x = jnp.where(gate(keys[1], params.flip_prob), dm_pix.flip_left_right(x), x)

    jittered = jnp.clip(dm_pix.random_brightness(keys[2], x, params.brightness), 0.0, 1.0)
    jittered = jnp.clip(
        dm_pix.random_contrast(keys[3], jittered, 1 - params.contrast, 1 + params.contrast),
        0.0,
        1.0,
    )
    if colour:
        jittered = jnp.clip(
            dm_pix.random_saturation(
                keys[4], jittered, 1 - params.saturation, 1 + params.saturation
            ),
            0.0,
            1.0,
        )
        jittered = jnp.clip(dm_pix.random_hue(keys[5], jittered, params.hue), 0.0, 1.0)
    x = jnp.where(gate(keys[6], params.jitter_prob), jittered, x)
    if colour:
        gray = dm_pix.rgb_to_grayscale(x, keep_dims=True)
        x = jnp.where(gate(keys[7], params.grayscale_prob), gray, x)

    sigma = jax.random.uniform(keys[8], (), minval=0.1, maxval=jnp.maximum(params.blur_sigma, 0.1))
    x = jnp.where(gate(keys[9], params.blur_prob[view]), gaussian_blur(x, sigma), x)
    x = jnp.where(gate(keys[10], params.solarize_prob[view]), dm_pix.solarize(x, 0.5), x)

    noise_std = jax.random.uniform(keys[11], (), minval=0.0, maxval=params.noise_std)
    x = x + noise_std * jax.random.normal(keys[13], x.shape)
    return jnp.clip(x, 0.0, 1.0)


def augment_batch(key: jax.Array, images: jax.Array, params: Augment, view: int) -> jax.Array:
    """`augment` over a batch `[B, H, W, C]` with one independent key per image."""
    keys = jax.random.split(key, images.shape[0])
    return jax.vmap(lambda k, x: augment(k, x, params, view))(keys, images)


def to_float(images: jax.Array) -> jax.Array:
    """uint8 images in [0, 255] -> float32 in [0, 1]."""
    return images.astype(jnp.float32) / 255.0
