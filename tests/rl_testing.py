"""Helpers of the agent tests: probe environments with known values, step loops.

`Probe(horizon, end, continuous, action_reward)`: the observation is the one-hot time
step `t mod horizon`; every step pays 0 except the last one of an episode, which pays 1
(`action_reward=False`) or a reward that depends on the action: `1[a = 1]` (discrete) or
`1 - (a - 0.5)^2` (continuous, in [-1, 1]). The episode ends after `horizon` steps by
termination (`end="terminate"`) or by the time limit (`end="truncate"`, never terminal).

Known values, discount gamma:
- horizon 1, terminate, constant reward: Q = 1 (one step, known reward);
- horizon 1, truncate, constant reward: every step is truncated and the next state is
  the same, so a bootstrapping agent learns Q = 1 / (1 - gamma), one that wrongly treats
  truncation as the end learns 1;
- horizon 2, terminate, action reward: Q(s1, a) = r(a), Q(s0, .) = gamma max_a r(a) = gamma.
"""

from __future__ import annotations

import gymnax
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

import stabilizers


@struct.dataclass
class ProbeState(environment.EnvState):
    time: int


@struct.dataclass
class ProbeParams(environment.EnvParams):
    max_steps_in_episode: int = 1


class Probe(environment.Environment):
    def __init__(self, horizon: int, end: str, continuous: bool, action_reward: bool):
        super().__init__()
        self.horizon, self.end = horizon, end
        self.continuous, self.action_reward = continuous, action_reward

    @property
    def default_params(self) -> ProbeParams:
        limit = self.horizon if self.end == "truncate" else self.horizon + 8
        return ProbeParams(max_steps_in_episode=limit)

    def _obs(self, time):
        return jax.nn.one_hot(time % self.horizon, self.horizon)

    def reward(self, action):
        if not self.action_reward:
            return jnp.float32(1.0)
        if self.continuous:
            return 1.0 - jnp.square(jnp.clip(action[0], -1.0, 1.0) - 0.5)
        return (action == 1).astype(jnp.float32)

    def step_env(self, key, state, action, params):
        time = state.time + 1
        last = time % self.horizon == 0
        reward = jnp.where(last, self.reward(action), 0.0)
        terminated = last if self.end == "terminate" else jnp.zeros((), bool)
        new = ProbeState(time=time)
        return self._obs(time), new, reward, terminated, {}

    def reset_env(self, key, params):
        return self._obs(0), ProbeState(time=0)

    def is_terminated(self, state, params):
        last = (state.time > 0) & (state.time % self.horizon == 0)
        return last if self.end == "terminate" else jnp.zeros((), bool)

    def action_space(self, params=None):
        if self.continuous:
            return spaces.Box(-1.0, 1.0, (1,), jnp.float32)
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (self.horizon,), jnp.float32)

    @property
    def num_actions(self) -> int:
        return 1 if self.continuous else 2


def register(horizon: int, end: str, continuous: bool, action_reward: bool) -> str:
    """Registers the probe (once) and returns its gymnax id."""
    kind = "box" if continuous else "discrete"
    name = f"Probe-h{horizon}-{end}-{kind}" + ("-action" if action_reward else "")
    if name not in gymnax.registered_envs:
        gymnax.register(name, lambda: Probe(horizon, end, continuous, action_reward))
    return name


def first_seed(states):
    """The first grid point of a harness state (shared counters have no seed axis)."""
    return jax.tree.map(
        lambda x: x if stabilizers.is_shared(x) else x[0], states, is_leaf=stabilizers.is_shared
    )


def stepper(algo, config):
    """`(init, step)` of `algo`, jitted for `config` (one compile each)."""
    init = jax.jit(lambda key: algo.init(key, config))
    step = jax.jit(lambda state: algo.step(state, config))
    return init, step


def run_steps(step, state, n: int):
    """`n` calls of a jitted `step`; returns the last state and metrics."""
    metrics = None
    for _ in range(n):
        state, metrics = step(state)
    return state, metrics
