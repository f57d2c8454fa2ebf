"""Baird's counterexample: off-policy semi-gradient TD(0) chased through a target network.

Seven states, eight features (Sutton & Barto 2018, section 11.2): the upper six states
have features 2 e_i + e_8, the lower one e_7 + 2 e_8. The behaviour policy takes the
dashed action (to one of the six upper states, uniformly) with probability 6/7 and the
solid action (to the lower state) with 1/7, so its next state is uniform over the seven,
as is its state distribution. The target policy always takes the solid action; every
reward is 0, gamma = 0.99 and v_pi = 0. Off-policy TD(0) with importance ratios
rho = pi / b (7 for solid, 0 for dashed) bootstraps from target weights w_bar:

    delta = r + gamma x(S')^T w_bar - x(S)^T w,    w <- w + alpha mean_batch(rho delta x(S)),

and w_bar follows w through `stabilizers.periodic(every, decay)`: a hard copy every
`every` updates (decay 0) or an EMA (every 1). With w_bar = w this diverges for every
alpha > 0; a target old enough makes it converge (Fellows et al. 2023). In expectation
over the behaviour's transitions the update is the "DP" form (S&B eq. 11.9),
alpha Phi^T D (gamma P_pi Phi w_bar - Phi w) with D = I / 7: `update="expected"` takes
it exactly, as the average over all 49 equally likely (S, S') pairs.

References:
  Baird, Residual algorithms: reinforcement learning with function approximation, 1995.
  Sutton & Barto, Reinforcement Learning: An Introduction, 2nd ed., 2018, section 11.2.
  Fellows, Smith & Whiteson, Why target networks stabilise temporal difference methods,
  ICML 2023.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers

NUM_STATES = 7
NUM_FEATURES = 8
LOWER = NUM_STATES - 1
"""Index of the lower state, where the solid action leads."""
B_SOLID = 1.0 / NUM_STATES
"""Probability of the solid action under the behaviour policy (pi takes it always)."""
INITIAL_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 10.0, 1.0)
"""w_0 of S&B Figure 11.2."""


@struct.dataclass
class Config:
    """Baird's counterexample, off-policy TD(0) with a target network."""

    batch_size: int = struct.field(pytree_node=False, default=32)
    """Transitions sampled per update (`update="sampled"`)."""
    update: Literal["sampled", "expected"] = struct.field(pytree_node=False, default="sampled")
    """"sampled": a minibatch of transitions from the behaviour; "expected": the average
    over every transition with its probability (S&B eq. 11.9)."""
    learning_rate: float = 0.01
    """alpha: SGD learning rate of the online weights."""
    every: int = 1
    """Target period N of `stabilizers.periodic(every, decay)`."""
    decay: float = 0.0
    """Weight kept on the old target at a due update (0: a hard copy)."""
    discount: float = 0.99
    """gamma."""


class State(NamedTuple):
    online: jax.Array
    target: jax.Array
    opt_state: optax.OptState
    target_state: optax.OptState
    key: jax.Array


def features() -> np.ndarray:
    """Phi, `[7, 8]`: row s is x(s) (numpy constant)."""
    phi = np.zeros((NUM_STATES, NUM_FEATURES), np.float32)
    for s in range(LOWER):
        phi[s, s], phi[s, -1] = 2.0, 1.0
    phi[LOWER, LOWER], phi[LOWER, -1] = 1.0, 2.0
    return phi


def _target_tx(config: Config) -> optax.GradientTransformation:
    return stabilizers.periodic(config.every, config.decay)


def init(key: jax.Array, config: Config) -> State:
    if config.update not in ("sampled", "expected"):
        raise ValueError(f"update must be 'sampled' or 'expected'; got {config.update!r}")
    online = jnp.asarray(INITIAL_WEIGHTS, jnp.float32)
    return State(
        online=online,
        target=online,
        opt_state=optax.sgd(config.learning_rate).init(online),
        target_state=_target_tx(config).init(online),
        key=key,
    )


def td_loss(w, w_bar, s_tm1, s_t, discount) -> jax.Array:
    """0.5 rho delta^2 for one transition S = s_tm1 -> S' = s_t (reward 0), whose gradient
    in `w` is the semi-gradient TD(0) direction -rho delta x(s_tm1)."""
    x = jnp.asarray(features())
    rho_tm1 = jnp.where(s_t == LOWER, 1.0 / B_SOLID, 0.0)  # solid iff it lands in LOWER
    v_tm1 = x[s_tm1] @ w
    v_t = x[s_t] @ jax.lax.stop_gradient(w_bar)
    delta = discount * v_t - v_tm1
    return 0.5 * rho_tm1 * jnp.square(delta)


def transitions(key: jax.Array, config: Config) -> tuple[jax.Array, jax.Array]:
    """(S, S') pairs: `batch_size` samples, or all 49 (each of probability 1/49)."""
    if config.update == "expected":
        pair = jnp.arange(NUM_STATES * NUM_STATES)
    else:
        pair = jax.random.randint(key, (config.batch_size,), 0, NUM_STATES * NUM_STATES)
    return pair // NUM_STATES, pair % NUM_STATES


def loss_fn(w, w_bar, s_tm1, s_t, config: Config) -> jax.Array:
    per = jax.vmap(td_loss, in_axes=(None, None, 0, 0, None))
    return jnp.mean(per(w, w_bar, s_tm1, s_t, config.discount))


def value_error(w: jax.Array) -> jax.Array:
    """||Phi w - v_pi||_2 with v_pi = 0."""
    return jnp.linalg.norm(jnp.asarray(features()) @ w)


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    key, batch_key = jax.random.split(state.key)
    s_tm1, s_t = transitions(batch_key, config)
    loss, grad = jax.value_and_grad(loss_fn)(state.online, state.target, s_tm1, s_t, config)
    updates, opt_state = optax.sgd(config.learning_rate).update(grad, state.opt_state)
    online = optax.apply_updates(state.online, updates)
    target, target_state = stabilizers.update_target(
        _target_tx(config), online, state.target, state.target_state
    )
    new = State(online, target, opt_state, target_state, key)
    return new, {
        "loss": loss,
        "value_error": value_error(online),
        "lag": stabilizers.lag(online, target),
    }


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    del config, key
    finite = jnp.all(jnp.isfinite(state.online)) & jnp.all(jnp.isfinite(state.target))
    return {
        "value_error": value_error(state.online),
        "lag": stabilizers.lag(state.online, state.target),
        "finite": finite.astype(jnp.float32),
    }


def units(config: Config) -> tuple[str, int]:
    count = NUM_STATES * NUM_STATES if config.update == "expected" else config.batch_size
    return "transitions", count


PRESETS = {
    "smoke": Config(every=100),
    "fellows": Config(learning_rate=0.01, every=500),
}
"""Named configs. "smoke": alpha 0.01 with a hard copy every 100 updates (converges in
expectation; the radius of its period map is 0.98). "fellows": the period from which
Fellows et al. (2023, Fig. 2) report convergence with sampled updates."""
