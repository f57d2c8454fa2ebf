"""What every off-policy agent (DQN, TD3, SAC) carries and does around its learner.

A run's state is an `AgentState`: the algorithm's learner, the replay buffer, the
environments, the training-episode returns, the key and a step count that every seed
shares. One `step` of an agent acts in `num_envs` environments, `record`s the
transitions, and lets its learner learn from the buffer where `learn_if` says so. The
config helpers (`static`, `check_common`, `setup_cache`) serve the agents' cached setups.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import jax

from agents import envs, replay
from stabilizers import SharedCount, checks, shared_count


class AgentState(NamedTuple):
    """Everything an off-policy agent's run carries from one step to the next.

    Attributes:
      learner: the agent's networks, optimiser states and latest losses (its `Learner`).
      replay: the replay buffer.
      env_state, obs: the environments and their current observations.
      episodes: training-episode returns.
      key: the run's random key.
      count: steps done so far (every seed shares it).
    """

    learner: Any
    replay: replay.Replay
    env_state: Any
    obs: jax.Array
    episodes: envs.Episodes
    key: jax.Array
    count: SharedCount


def start(
    learner: Any, buffer: replay.Replay, obs: jax.Array, env_state: Any, key: jax.Array
) -> AgentState:
    """The state of a fresh run: no step done, no episode finished."""
    return AgentState(
        learner=learner,
        replay=buffer,
        env_state=env_state,
        obs=obs,
        episodes=envs.episodes_init(obs.shape[0]),
        key=key,
        count=shared_count(),
    )


def record(
    state: AgentState, action: jax.Array, out: envs.EnvStep, key: jax.Array, **add_kwargs: Any
) -> AgentState:
    """The bookkeeping of one vectorised env step, the same in every agent.

    Stores `(obs, action, reward, terminated, next_obs)` (`next_obs` is the final
    observation where an episode ended, so truncation still bootstraps), moves to the
    next observation, updates the episode statistics, keeps the new `key` and advances
    the shared step `count`. `add_kwargs` go to `replay.add`.
    """
    items = replay.Transition(state.obs, action, out.reward, out.terminated, out.next_obs)
    return state._replace(
        replay=replay.add(state.replay, items, **add_kwargs),
        env_state=out.env_state,
        obs=out.obs,
        episodes=envs.episodes_update(state.episodes, out.reward, out.terminated | out.truncated),
        key=key,
        count=SharedCount(state.count.value + 1),
    )


def learn_if(
    due: jax.Array, learn: Callable[[Any, replay.Replay], Any], state: AgentState
) -> AgentState:
    """`state.learner = learn(state.learner, state.replay)` where `due`, else unchanged.

    `due` must be computed from counters every seed shares (a `SharedCount`): under the
    harness's vmap the `lax.cond` then stays a real branch and steps without an update do
    no gradient work. Only the learner goes through the branch; the buffer is read, not
    copied.
    """
    learner = jax.lax.cond(due, learn, lambda learner, buffer: learner, state.learner, state.replay)
    return state._replace(learner=learner)


def repeat(update: Callable[[Any, jax.Array], Any], carry: Any, key: jax.Array, n: int) -> Any:
    """Applies `carry = update(carry, k)` `n` times with fresh keys split from `key`
    (a `lax.scan`; a single call when `n == 1`), e.g. n gradient steps per vectorised env
    step."""
    if n == 1:
        return update(carry, key)

    def body(carry, k):
        return update(carry, k), None

    return jax.lax.scan(body, carry, jax.random.split(key, n))[0]


T = TypeVar("T")


def setup_cache(build: Callable[..., T]) -> Callable[..., T]:
    """`functools.lru_cache` for an agent's setup (environment, spaces, networks), with
    the guarantee that nothing it caches was made inside a trace.

    The first call usually comes while `init` is being traced (`jax.eval_shape` of the
    command line's checks, or `jit`): `build` then runs under
    `jax.ensure_compile_time_eval()`, so what it computes with `jnp` (an environment's
    default params, its constants) is concrete, and the result is checked for tracers
    (`envs.check_concrete`) before it is cached. A tracer kept in the cache would leak
    out of its trace into every later program.
    """

    @functools.lru_cache(maxsize=64)
    @functools.wraps(build)
    def cached(*args: Any, **kwargs: Any) -> T:
        with jax.ensure_compile_time_eval():
            setup = build(*args, **kwargs)
        envs.check_concrete(f"{build.__module__}.{build.__name__}", setup)
        return setup

    return cached


def static(config: Any) -> Any:
    """`config` with every pytree leaf (float hyperparameter, possibly traced) set to 0.0.

    What remains are the static fields, which determine an agent's setup (environment,
    networks, sizes): the result is hashable and serves as its `lru_cache` key. The leaves
    are read from the dataclass (`pytree_node`), so a new hyperparameter cannot be
    forgotten.
    """
    leaves = [f.name for f in dataclasses.fields(config) if f.metadata.get("pytree_node", True)]
    return config.replace(hidden=tuple(config.hidden), **{name: 0.0 for name in leaves})


def check_common(c: Any, positive: Sequence[str], nonnegative: Sequence[str]) -> None:
    """The checks every off-policy agent's config needs, each a ValueError naming the field.

    `positive` fields must be integers >= 1, `nonnegative` ones integers >= 0; `hidden`
    must be positive layer widths and the buffer must hold one step of `num_envs` envs.
    """
    for name in positive:
        checks.positive_int(name, getattr(c, name))
    for name in nonnegative:
        value = getattr(c, name)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    if not all(isinstance(h, int) and h >= 1 for h in c.hidden):
        raise ValueError(f"hidden must be positive layer widths; got {c.hidden!r}")
    if c.num_envs > c.buffer_size:
        raise ValueError(f"buffer_size ({c.buffer_size}) must hold one step of {c.num_envs} envs")
