"""The agents' networks: ReLU MLPs, critics and their ensembles, deterministic and Gaussian
actors."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

TORSO = "MLP_0"
"""The name of the `ReluMLP` inside the critic and the actors: it fixes their parameter
paths and, since flax folds a module's path into its initialisation key, their initial
values."""


class ReluMLP(nn.Module):
    """ReLU MLP; `features` lists every layer's width. The last layer is linear unless
    `activate_final`. With `layer_norm`, a LayerNorm comes after each hidden dense layer,
    before its ReLU (PQN's placement, Gallici et al. 2024)."""

    features: Sequence[int]
    activate_final: bool = False
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i < len(self.features) - 1 or self.activate_final:
                x = nn.relu(nn.LayerNorm()(x) if self.layer_norm else x)
        return x


class Critic(nn.Module):
    """Q(s, a): an MLP on the concatenated observation and action, one output."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return ReluMLP((*self.hidden, 1), name=TORSO)(x)[..., 0]


class DeterministicActor(nn.Module):
    """`center + scale * tanh(MLP(obs))`: an action inside the box [low, high] (TD3, DDPG)."""

    hidden: Sequence[int]
    action_size: int
    center: tuple[float, ...] | float = 0.0
    scale: tuple[float, ...] | float = 1.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        squashed = jnp.tanh(ReluMLP((*self.hidden, self.action_size), name=TORSO)(obs))
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

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = ReluMLP(self.hidden, activate_final=True, name=TORSO)(obs)
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
