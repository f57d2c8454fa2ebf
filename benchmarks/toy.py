"""A linear fixed-point problem chased through a target network; the template algorithm.

The online params theta regress onto a target they produce themselves,

    y = A theta_bar + b + noise,    loss(theta) = 0.5 * mean_i ||theta - y_i||^2,

with theta_bar the target network (an EMA, a periodic copy, or theta itself behind a
stop-gradient). The fixed point is theta* = (I - A)^{-1} b. A is symmetric with
eigenvalues in [-1, 0.5]; with plain SGD of learning rate eta and no target, the mode of
eigenvalue -1 contracts by |1 - 2 eta| per step, so eta = 0.95 oscillates slowly and
eta > 1 diverges. A soft target damps that oscillation; a too-slow one lags.

As a template, this file is everything an algorithm is (`benchmarks.algorithm.Algorithm`):
a `Config` (sizes and choices static fields, hyperparameters pytree leaves that the
harness can sweep), a `State` NamedTuple, `init`, a pure `step` returning scalar metrics,
`evaluate`, `units`, and `PRESETS` with a "smoke" config that runs in seconds on a CPU.
A new algorithm copies this shape into its family (`agents/`, `generative/`,
`representation/`) and adds one line to that family's `ALGORITHMS`; `python -m
benchmarks.train --algo NAME` then runs it and `tests/test_conformance.py` checks it.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers


@struct.dataclass
class Config:
    """Toy fixed-point regression."""

    dim: int = struct.field(pytree_node=False, default=16)
    """Dimension of theta."""
    batch_size: int = struct.field(pytree_node=False, default=32)
    """Noisy targets averaged per step."""
    target: Literal["ema", "periodic", "periodic_ema", "none"] = struct.field(
        pytree_node=False, default="ema"
    )
    """Target network: "ema", "periodic", "periodic_ema" or "none" (online params behind a
    stop-gradient)."""
    copy_every: int = 10
    """Period of the "periodic" target (a hard copy) and of the "periodic_ema" one (an EMA
    step of `decay`: `stabilizers.periodic(copy_every, decay)`). A pytree leaf, so one
    program sweeps it with the learning rate and the decay."""
    problem_seed: int = struct.field(pytree_node=False, default=0)
    """Seed of A and b (the problem; the run seeds vary init and noise)."""
    learning_rate: float = 0.95
    """SGD learning rate of the online params."""
    decay: float = 0.9
    """EMA decay of the "ema" and "periodic_ema" targets (weight on the old target)."""
    noise: float = 0.1
    """Standard deviation of the noise on each regression target."""


class State(NamedTuple):
    """Everything that changes during training (one seed); the harness vmaps over it."""

    online: jax.Array
    target: jax.Array
    opt_state: optax.OptState
    target_state: optax.OptState
    key: jax.Array


def problem(config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, b, theta*) of the problem, fixed by `config.problem_seed` (numpy constants)."""
    rng = np.random.default_rng(config.problem_seed)
    q, _ = np.linalg.qr(rng.normal(size=(config.dim, config.dim)))
    eig = np.linspace(-1.0, 0.5, config.dim)
    a = (q * eig) @ q.T
    b = rng.normal(size=config.dim)
    theta_star = np.linalg.solve(np.eye(config.dim) - a, b)
    return a.astype(np.float32), b.astype(np.float32), theta_star.astype(np.float32)


def _target_tx(config: Config) -> optax.GradientTransformation:
    if config.target == "ema":
        return stabilizers.ema(config.decay)
    if config.target == "periodic":
        return stabilizers.periodic(config.copy_every)
    if config.target == "periodic_ema":
        return stabilizers.periodic(config.copy_every, config.decay)
    if config.target == "none":
        return stabilizers.ema(0.0)
    raise ValueError(
        f"target must be 'ema', 'periodic', 'periodic_ema' or 'none'; got {config.target!r}"
    )


def init(key: jax.Array, config: Config) -> State:
    """Online params drawn from `key`; the target starts as a copy."""
    init_key, key = jax.random.split(key)
    online = jax.random.normal(init_key, (config.dim,))
    return State(
        online=online,
        target=online,
        opt_state=optax.sgd(config.learning_rate).init(online),
        target_state=_target_tx(config).init(online),
        key=key,
    )


def loss_fn(online, target, noise, config: Config) -> jax.Array:
    """The regression loss of the online params on noisy targets from the target params."""
    a, b, _ = problem(config)
    y = (a @ jax.lax.stop_gradient(target) + b)[None, :] + config.noise * noise  # [batch, dim]
    return 0.5 * jnp.mean(jnp.sum(jnp.square(online[None, :] - y), axis=-1))


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    """One SGD step of the online params, then one update of the target."""
    key, noise_key = jax.random.split(state.key)
    noise = jax.random.normal(noise_key, (config.batch_size, config.dim))
    loss, grad = jax.value_and_grad(loss_fn)(state.online, state.target, noise, config)
    updates, opt_state = optax.sgd(config.learning_rate).update(grad, state.opt_state)
    online = optax.apply_updates(state.online, updates)
    target, target_state = stabilizers.update_target(
        _target_tx(config), online, state.target, state.target_state
    )
    new = State(online, target, opt_state, target_state, key)
    return new, {
        "loss": loss,
        "error": _error(online, config),
        "lag": stabilizers.lag(online, target),
    }


def _error(online, config):
    _, _, theta_star = problem(config)
    return jnp.linalg.norm(online - theta_star) / np.linalg.norm(theta_star)


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """The relative distance of the online params to the fixed point."""
    del key
    return {"error": _error(state.online, config)}


def units(config: Config) -> tuple[str, int]:
    """One step consumes `batch_size` noisy samples."""
    return "samples", config.batch_size


PRESETS = {"smoke": Config()}
"""Named configs. "smoke": a run of a few seconds on a CPU (here the default itself)."""
