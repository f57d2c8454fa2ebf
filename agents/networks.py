"""The agents' networks: ReLU MLPs, the MinAtar convolutional torso, critics and their
ensembles, deterministic and Gaussian actors.

What reads the observation is chosen from its shape (`torso`): the convolutional torso of
Young & Tian (2019) for images (height x width x channels, as `agents.envs.encode` keeps
them), an MLP on the flattened observation otherwise; a config's `network` field
overrides the choice.

References:
  Young & Tian, MinAtar: an Atari-inspired testbed for thorough and reproducible
  reinforcement learning experiments, 2019.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

TORSO = "MLP_0"
"""The name of the `ReluMLP` inside the critic and the actors: it fixes their parameter
paths and, since flax folds a module's path into its initialisation key, their initial
values."""

Network = Literal["auto", "mlp", "conv"]
"""What reads the observation: "auto" (a convolution for images, else an MLP), "mlp" or
"conv"."""


def torso(network: str, obs_shape: Sequence[int], env: str = "the environment") -> str:
    """The torso a config's `network` choice gives for observations of `obs_shape`:
    "conv" or "mlp". "auto" picks "conv" for images (rank 3: height x width x channels).

    Raises:
      ValueError: an unknown choice, or "conv" for observations that are not images.
    """
    obs_shape = tuple(obs_shape)
    if network not in ("auto", "mlp", "conv"):
        raise ValueError(f"network must be 'auto', 'mlp' or 'conv'; got {network!r}")
    image = len(obs_shape) == 3
    if network == "conv" and not (image and min(obs_shape[:2]) >= 3):
        raise ValueError(
            f"network='conv' needs image observations (height x width x channels, at least "
            f"3 x 3); {env} gives observations of shape {obs_shape}"
        )
    return "conv" if network == "conv" or (network == "auto" and image) else "mlp"


class MinAtarTorso(nn.Module):
    """The convolutional layer of the MinAtar DQN (Young & Tian 2019): a 3 x 3
    convolution of `channels` (16) filters, stride 1, no padding, then ReLU, flattened.
    Input `[..., height, width, channels]`; output `[..., features]`.

    `y[a, b, o] = relu(bias[o] + sum_{i, j, c} x[a + i, b + j, c] kernel[i, j, c, o])`,
    computed as one matrix product of the 3 x 3 patches (laid out as `i, j, c`) with the
    kernel (`[3, 3, C, channels]`, initialised as `nn.Conv`'s), which XLA's CPU backend
    runs far faster than a convolution inside a scanned training loop.
    """

    channels: int = 16

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (3, 3, c, self.channels))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.channels,))
        h, w = x.shape[-3] - 2, x.shape[-2] - 2
        patches = jnp.concatenate(
            [x[..., i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1
        )
        y = patches @ jnp.reshape(kernel, (9 * c, self.channels))
        y = y + jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
        return jnp.reshape(nn.relu(y), (*x.shape[:-3], -1))


def features(obs: jax.Array, obs_ndim: int, conv: bool) -> jax.Array:
    """What a network's MLP reads of `obs` (trailing `obs_ndim` axes: one observation):
    the MinAtar torso's features (`conv`), or the observation flattened. Call it inside
    a compact module; the torso's parameters are named "Conv"."""
    if conv:
        return MinAtarTorso(name="Conv")(obs)
    if obs_ndim == 1:
        return obs
    return jnp.reshape(obs, (*obs.shape[: obs.ndim - obs_ndim], -1))


class ReluMLP(nn.Module):
    """ReLU MLP; `features` lists every layer's width. The last layer is linear unless
    `activate_final`. With `obs_ndim > 1` the trailing `obs_ndim` axes of the input are
    flattened first; with `conv` the input goes through `MinAtarTorso` first. With
    `layer_norm`, a LayerNorm comes after each hidden dense layer, before its ReLU (PQN's
    placement, Gallici et al. 2024)."""

    features: Sequence[int]
    activate_final: bool = False
    obs_ndim: int = 1
    conv: bool = False
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = features(x, self.obs_ndim, self.conv)
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i < len(self.features) - 1 or self.activate_final:
                x = nn.relu(nn.LayerNorm()(x) if self.layer_norm else x)
        return x


class Critic(nn.Module):
    """Q(s, a): an MLP on the concatenated observation features and action, one output."""

    hidden: Sequence[int]
    obs_ndim: int = 1
    conv: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([features(obs, self.obs_ndim, self.conv), action], axis=-1)
        return ReluMLP((*self.hidden, 1), name=TORSO)(x)[..., 0]


class DeterministicActor(nn.Module):
    """`center + scale * tanh(MLP(obs))`: an action inside the box [low, high] (TD3, DDPG)."""

    hidden: Sequence[int]
    action_size: int
    center: tuple[float, ...] | float = 0.0
    scale: tuple[float, ...] | float = 1.0
    obs_ndim: int = 1
    conv: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = features(obs, self.obs_ndim, self.conv)
        squashed = jnp.tanh(ReluMLP((*self.hidden, self.action_size), name=TORSO)(x))
        lead = (1,) * (squashed.ndim - 1)  # explicit broadcasting over batch axes
        center = jnp.reshape(jnp.asarray(self.center, jnp.float32), lead + (-1,))
        scale = jnp.reshape(jnp.asarray(self.scale, jnp.float32), lead + (-1,))
        return center + scale * squashed


class GaussianActor(nn.Module):
    """Mean and log standard deviation of a Gaussian over pre-squash actions (SAC).

    The log standard deviation is squashed into [log_std_min, log_std_max] with a tanh
    and an affine map, which keeps its gradient alive at the bounds.
    """

    hidden: Sequence[int]
    action_size: int
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    obs_ndim: int = 1
    conv: bool = False

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = features(obs, self.obs_ndim, self.conv)
        h = ReluMLP(self.hidden, activate_final=True, name=TORSO)(x)
        mean = nn.Dense(self.action_size)(h)
        raw = jnp.tanh(nn.Dense(self.action_size)(h))
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (raw + 1.0)
        return mean, log_std


def ensemble_init(module: nn.Module, key: jax.Array, members: int, *inputs: jax.Array):
    """Parameters of `members` copies of `module`, each initialised with its own key.

    The leaves get a leading axis of size `members` (TD3 and SAC's twin critics, Fujimoto
    et al. 2018: independent initialisations), and `ensemble_apply` runs all copies as one
    batched computation rather than `members` separate networks.
    """
    return jax.vmap(module.init, in_axes=(0,) + (None,) * len(inputs))(
        jax.random.split(key, members), *inputs
    )


def ensemble_apply(module: nn.Module, params, *inputs: jax.Array) -> jax.Array:
    """Every member of an ensemble on the same inputs: outputs with a leading `members` axis."""
    return jax.vmap(module.apply, in_axes=(0,) + (None,) * len(inputs))(params, *inputs)


def member(params, index: int):
    """The parameters of one member of an ensemble."""
    return jax.tree.map(lambda x: x[index], params)
