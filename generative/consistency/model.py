"""The consistency model f(x, t): the boundary-condition parameterisation around a network F.

    f(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, 0.25 ln t),   f(x, sigma_min) = x exactly.

Reference: Song, Dhariwal, Chen & Sutskever, Consistency models, 2023, app. C.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from generative import data as gdata
from generative import networks
from generative.consistency.config import Config


def scalings(t: jax.Array, config: Config) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""`(c_skip, c_out, c_in)` of the boundary-condition parameterisation at level t.

    .. math::
      c_\text{skip} = \frac{\sigma_d^2}{(t - \epsilon)^2 + \sigma_d^2}, \quad
      c_\text{out} = \frac{\sigma_d (t - \epsilon)}{\sqrt{\sigma_d^2 + t^2}}, \quad
      c_\text{in} = \frac{1}{\sqrt{t^2 + \sigma_d^2}},

    so that c_skip(eps) = 1 and c_out(eps) = 0 exactly.

    References:
      Song et al. 2023, app. C; `get_scalings_for_boundary_condition` in the authors' code.
    """
    sd2 = config.sigma_data**2
    shifted = t - config.sigma_min
    c_skip = sd2 / (shifted**2 + sd2)
    c_out = config.sigma_data * shifted / jnp.sqrt(sd2 + t**2)
    c_in = 1.0 / jnp.sqrt(t**2 + sd2)
    return c_skip, c_out, c_in


def network(config: Config):
    """The network F: a residual MLP for 2-D toys, a U-Net for images."""
    if config.data in gdata.TOYS:
        return networks.ResidualMLP(
            width=config.width,
            depth=config.depth,
            embedding=config.embedding,
            fourier_scale=config.fourier_scale,
            dropout=config.dropout,
            layer_norm=config.layer_norm,
        )
    height = data_shape(config)[0]
    levels = 2 if height <= 8 else len(config.channels)
    return networks.UNet(
        channels=tuple(config.channels[:levels]),
        embedding=config.embedding,
        fourier_scale=config.fourier_scale,
        dropout=config.dropout,
    )


def data_shape(config: Config) -> tuple[int, ...]:
    """The shape of one example."""
    if config.data in gdata.TOYS:
        return (2,)
    return tuple(images(config).shape[1:])


def images(config: Config) -> np.ndarray:
    """The training images of `config` (uint8)."""
    return gdata.load_images(config.data, config.data_dir or None)


def consistency_fn(
    params: Any, x: jax.Array, t: jax.Array, config: Config, dropout_key: jax.Array | None = None
) -> jax.Array:
    """f(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, 0.25 ln t), for one example x.

    Args:
      params: network params.
      x: one example (a 2-D point or an image `[H, W, C]`).
      t: its noise level, a scalar >= sigma_min.
      config: the config.
      dropout_key: a key for dropout (training); None runs the network deterministically.
    """
    c_skip, c_out, c_in = scalings(t, config)
    rngs = {"dropout": dropout_key} if dropout_key is not None else None
    out = network(config).apply(
        {"params": params},
        c_in * x,
        0.25 * jnp.log(t),
        train=dropout_key is not None,
        rngs=rngs,
    )
    return c_skip * x + c_out * out
