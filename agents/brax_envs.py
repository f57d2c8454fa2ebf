"""Brax environments behind the gymnax 1.0 API the agents use: `--env brax:<env>[@backend]`.

    env, params = make("brax:hopper")          # brax's hopper on the `spring` backend
    env, params = make("brax:hopper@mjx")      # the same task on MuJoCo XLA

`BraxEnv` wraps a `brax.envs` environment so that it reads as a gymnax one:
`reset(key, params) -> (obs, state)` and `step(key, state, action, params) -> (obs, state,
reward, terminated, truncated, info)`. An episode ends in one of two ways:

- `terminated`: the task's own end (brax's `done`, e.g. the hopper falling): not bootstrapped;
- `truncated`: the time limit, `params.max_steps_in_episode` steps (1000, brax's
  `envs.create` default and its training notebook's `episode_length`): bootstrapped.

Either one resets the environment in the same step with a fresh key (as gymnax does; brax's
own `AutoResetWrapper` instead restarts from the episode's first state), and
`info["final_observation"]` holds the observation the step reached before that reset.
Actions are in [-1, 1]^d, the box brax's tasks expect (they rescale to their actuators'
ranges themselves). Reset and step return one pytree structure (leaf shapes and dtypes
included), so a compiled program never sees another.

Backend: `spring` by default, the fastest of brax's pipelines on a CPU: in a jitted
`lax.scan` over 64 environments on this project's 2-core CPU, hopper made 72k env steps/s
with `spring` and 15k with `mjx`, halfcheetah 14k and 2k. `@generalized`, `@positional`
and `@mjx` choose another.

Why brax and not MuJoCo Playground (the `playground` package): brax 0.14 is already a
dependency and runs its classic locomotion tasks (hopper, halfcheetah, ...) on every
backend above. Playground's versions of these tasks run on MJX or MuJoCo Warp only (its
hopper defaults to Warp, which needs a GPU), about five times slower than `spring` on a CPU
by the numbers above, and it adds warp-lang, mediapy and ml-collections, and downloads
MuJoCo Menagerie from GitHub at run time for many of its tasks.

Reference: Freeman et al., Brax - a differentiable physics engine for large scale rigid
body simulation, NeurIPS Datasets and Benchmarks 2021.
"""

from __future__ import annotations

import contextlib
import functools
import io
import warnings
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

PREFIX = "brax:"
BACKENDS = ("spring", "generalized", "positional", "mjx")
DEFAULT_BACKEND = "spring"
EPISODE_LENGTH = 1000


@struct.dataclass
class BraxParams:
    """The static settings of a Brax task (a Python int, never an array: a cached setup may hold
    them)."""

    max_steps_in_episode: int = EPISODE_LENGTH
    """The time limit: an episode is truncated after this many steps."""


@struct.dataclass
class BraxState:
    """brax's `State` of the environment and the steps taken in its episode."""

    brax: Any
    time: jax.Array


def _brax_envs():
    # mujoco.mjx prints a line on stdout when the optional `warp` package is missing; that
    # line is noise here (no backend this module offers uses Warp).
    with contextlib.redirect_stdout(io.StringIO()):
        from brax import envs
    return envs


def names() -> list[str]:
    """Every `brax:<env>` name (the default backend)."""
    return [PREFIX + name for name in sorted(_brax_envs()._envs)]


class BraxEnv:
    """A brax environment with the gymnax 1.0 interface (see the module docstring)."""

    def __init__(self, env: Any, name: str):
        self.env = env
        self.name = name
        # Jitted once here, brax's reset and step are traced once per process and shape,
        # however many programs (init, training segment, evaluation) inline them.
        self._brax_reset = jax.jit(env.reset)
        self._brax_step = jax.jit(env.step)
        self._obs_size = int(jax.eval_shape(env.reset, jax.random.key(0)).obs.shape[-1])
        self._action_size = int(env.action_size)

    @property
    def default_params(self) -> BraxParams:
        return BraxParams()

    def observation_space(self, params: BraxParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self._obs_size,), jnp.float32)

    def action_space(self, params: BraxParams | None = None) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self._action_size,), jnp.float32)

    def reset(
        self, key: jax.Array, params: BraxParams | None = None
    ) -> tuple[jax.Array, BraxState]:
        with _brax_numpy():
            state = self._brax_reset(key)
        state = state.replace(
            obs=jnp.asarray(state.obs, jnp.float32),
            reward=jnp.zeros((), jnp.float32),
            done=jnp.zeros((), jnp.float32),
        )
        return state.obs, BraxState(brax=state, time=jnp.zeros((), jnp.int32))

    def step(
        self, key: jax.Array, state: BraxState, action: jax.Array, params: BraxParams | None = None
    ) -> tuple[jax.Array, BraxState, jax.Array, jax.Array, jax.Array, dict[str, Any]]:
        params = self.default_params if params is None else params
        before = state.brax
        with _brax_numpy():
            after = self._brax_step(before, action)
        reward = jnp.asarray(after.reward, jnp.float32)
        brax_done = jnp.asarray(after.done, jnp.float32)
        terminated = brax_done > 0.5
        time = state.time + 1
        truncated = time >= params.max_steps_in_episode
        obs_st = jnp.asarray(after.obs, jnp.float32)
        obs_re, state_re = self.reset(key, params)
        stepped = BraxState(
            brax=after.replace(obs=obs_st, reward=reward, done=brax_done),
            time=time,
        )
        _check_same_structure(state_re, stepped, self.name)
        done = terminated | truncated
        state = jax.tree.map(lambda r, s: jnp.where(done, r, s).astype(r.dtype), state_re, stepped)
        obs = jnp.where(done, obs_re, obs_st)
        info = {"terminated": terminated, "truncated": truncated, "final_observation": obs_st}
        return obs, state, reward, terminated, truncated, info


def _brax_numpy():
    # brax's physics relies on implicit rank promotion; a caller may have made it an error.
    return jax.numpy_rank_promotion("allow")


def _check_same_structure(reset: BraxState, stepped: BraxState, name: str) -> None:
    a, b = jax.tree.structure(reset), jax.tree.structure(stepped)
    if a != b:
        raise ValueError(f"{name}: brax's step changes the state's structure ({b} vs {a})")


def parse(name: str) -> tuple[str, str]:
    """`"brax:hopper@mjx"` -> `("hopper", "mjx")`; the backend defaults to `spring`."""
    body = name[len(PREFIX) :] if name.startswith(PREFIX) else name
    task, _, backend = body.partition("@")
    return task, backend or DEFAULT_BACKEND


@functools.lru_cache(maxsize=32)
def make(name: str) -> tuple[BraxEnv, BraxParams]:
    """The environment `brax:<env>[@backend]` and its params, or a one-line ValueError.

    Args:
      name: e.g. "brax:hopper", "brax:inverted_pendulum", "brax:halfcheetah@mjx".

    Returns:
      `(env, params)`, as `gymnax.make` returns them.
    """
    task, backend = parse(name)
    envs = _brax_envs()
    if task not in envs._envs:
        raise ValueError(
            f"unknown brax environment {task!r} in {name!r}; brax environments: "
            + ", ".join(names())
        )
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown brax backend {backend!r} in {name!r}; backends: {', '.join(BACKENDS)} "
            f"(default {DEFAULT_BACKEND}), e.g. brax:{task}@{BACKENDS[1]}"
        )
    # Concrete arrays even when the first call comes while a program is being traced: the
    # result is cached and must not hold that trace's values.
    with jax.ensure_compile_time_eval(), warnings.catch_warnings():
        # brax 0.14 warns on every model load that its own pipelines are unmaintained.
        warnings.filterwarnings("ignore", "Brax System", UserWarning)
        env = BraxEnv(envs.get_environment(task, backend=backend), name)
    return env, BraxParams()
