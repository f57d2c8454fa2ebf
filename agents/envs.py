"""gymnax environments for the agents: lookup, space checks, stepping, episodes, evaluation.

Every agent steps `num_envs` copies of one gymnax environment in lock-step with the
gymnax 1.0 API, `env.step(key, state, action, params) -> (obs, state, reward, terminated,
truncated, info)`, which resets an environment automatically when its episode ends. The
transition stored for learning uses `info["final_observation"]` (the observation before
that reset) as the next observation and `terminated` alone as the end of the return: an
episode cut by the time limit (`truncated`) is bootstrapped, one that reached a terminal
state is not (Pardo et al., Time limits in reinforcement learning, ICML 2018).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

# gymnax's own code may broadcast arrays of different ranks (Swimmer-misc does): a
# `jax_numpy_rank_promotion="raise"` meant for this project's code must not reject it.
_THEIRS = functools.partial(jax.numpy_rank_promotion, "allow")


def make(name: str) -> tuple[Any, Any]:
    """`gymnax.make(name)`, built outside any trace, with an error that lists the names.

    The environment and its params end up in the agents' cached setups and are closed
    over by every compiled program, so they must be concrete: they are built under
    `jax.ensure_compile_time_eval()` (gymnax computes some default params and constants
    with `jnp`, which inside a trace would give tracers that outlive it) and checked.

    Args:
      name: a registered gymnax environment id, e.g. "CartPole-v1" or "Pendulum-v1", or
        a Brax task, "brax:<env>[@backend]" (`agents.brax_envs`).

    Returns:
      `(env, env_params)`.

    Raises:
      ValueError: an unknown name, or an environment that cannot be built here (MNIST
        bandit without its data files).
    """
    if isinstance(name, str) and name.startswith("brax:"):
        from agents import brax_envs

        return brax_envs.make(name)
    if not isinstance(name, str) or name not in gymnax.registered_envs:
        raise ValueError(
            f"unknown environment {name!r}; registered gymnax environments: "
            + ", ".join(gymnax.registered_envs)
        )
    try:
        with jax.ensure_compile_time_eval(), _THEIRS():
            env, env_params = gymnax.make(name)
    except OSError as e:  # MNISTBandit-bsuite reads (or downloads) MNIST when it is built
        raise ValueError(
            f"{name} could not be built: gymnax reads its data files when it builds it and "
            f"failed ({type(e).__name__}: {' '.join(str(e).split())}); MNISTBandit-bsuite "
            "needs the four MNIST files (train-images-idx3-ubyte.gz, ...) in /tmp/mnist, "
            "where gymnax.utils.load_mnist downloads them when a network is reachable"
        ) from None
    check_concrete(name, env, env_params)
    return env, env_params


def check_concrete(name: str, *objects: Any) -> None:
    """Raises a ValueError if a JAX tracer hides in `objects`: pytrees, or objects (such
    as a gymnax environment or an agent's setup) whose attributes hold arrays. A value
    made inside a trace must never be kept beyond it."""

    def leaves(obj: Any):
        for x in jax.tree.leaves(obj):
            if isinstance(x, jax.core.Tracer) or not hasattr(x, "__dict__"):
                yield x
            elif not isinstance(x, (jax.Array, np.ndarray)):
                yield from jax.tree.leaves(list(vars(x).values()))

    for obj in objects:
        if any(isinstance(x, jax.core.Tracer) for x in leaves(obj)):
            raise ValueError(
                f"{name}: {type(obj).__name__} holds values traced inside a jit/vmap; build "
                "it outside any trace (or under jax.ensure_compile_time_eval())"
            )


def observation_shape(env: Any, env_params: Any, name: str) -> tuple[int, ...]:
    """The shape of one observation as the agents' networks read it (`encode`).

    A `Discrete(n)` observation is one-hot: `(n,)`. An image (a Box of rank 3, height x
    width x channels, e.g. MinAtar's 10 x 10 x C) keeps its shape. Any other Box is
    flattened to a vector.
    """
    space = _observation_space(env, env_params)
    if isinstance(space, spaces.Discrete):
        return (int(space.n),)
    if not isinstance(space, spaces.Box):
        raise ValueError(
            f"{name} has observation space {space!r}; the agents read a Box (an array, "
            "flattened or, with rank 3, an image) or a Discrete observation (one-hot)"
        )
    shape = tuple(int(d) for d in space.shape)
    if len(shape) == 3:
        return shape
    return (int(np.prod(shape, dtype=np.int64)),)


def observation_size(env: Any, env_params: Any, name: str) -> int:
    """Number of values in one encoded observation (`observation_shape`)."""
    return int(np.prod(observation_shape(env, env_params, name), dtype=np.int64))


def _observation_space(env: Any, env_params: Any) -> Any:
    with jax.ensure_compile_time_eval():
        return env.observation_space(env_params)


def num_actions(env: Any, env_params: Any, name: str, algo: str) -> int:
    """The number of actions of a discrete action space, or a ValueError that says why not."""
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Discrete):
        raise ValueError(
            f"{algo} needs a discrete action space (it picks the action with the largest of "
            f"one Q-value per action); {name} has the continuous space {space!r}. Use td3, "
            "ddpg or sac for continuous actions."
        )
    return int(space.n)


def action_bounds(env: Any, env_params: Any, name: str, algo: str) -> tuple[np.ndarray, ...]:
    """`(low, high)` of a bounded continuous action space (float32 arrays of the action shape)."""
    space = env.action_space(env_params)
    if not isinstance(space, spaces.Box):
        raise ValueError(
            f"{algo} needs a continuous (Box) action space (its actor outputs a real-valued "
            f"action and the critic is differentiated through it); {name} has the discrete "
            f"space {space!r}. Use dqn for discrete actions."
        )
    shape = tuple(space.shape)
    low = np.broadcast_to(np.asarray(space.low, np.float32), shape).astype(np.float32)
    high = np.broadcast_to(np.asarray(space.high, np.float32), shape).astype(np.float32)
    if len(shape) != 1 or not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError(
            f"{algo} needs a bounded 1-d action space (a tanh-squashed actor); {name} has "
            f"low={space.low!r}, high={space.high!r}, shape={shape}"
        )
    if not np.all(high > low):
        raise ValueError(f"{name}: action space needs high > low; got {low} and {high}")
    return low, high


def max_episode_steps(env_params: Any, name: str) -> int:
    """The time limit of an episode (`env_params.max_steps_in_episode`)."""
    steps = getattr(env_params, "max_steps_in_episode", None)
    if steps is None:
        raise ValueError(f"{name} has no max_steps_in_episode: evaluation needs a time limit")
    return int(steps)


def encode(env: Any, env_params: Any, obs: jax.Array, batch_dims: int = 0) -> jax.Array:
    """Observations as the networks read them (float32, `observation_shape` after the
    `batch_dims` leading axes): one-hot for a Discrete space, images as they are, any
    other array flattened."""
    space = _observation_space(env, env_params)
    if isinstance(space, spaces.Discrete):
        return jax.nn.one_hot(obs, int(space.n), dtype=jnp.float32)
    if len(space.shape) == 3:
        return obs.astype(jnp.float32)
    return flatten(obs, batch_dims)


def flatten(obs: jax.Array, batch_dims: int = 0) -> jax.Array:
    """Flattens observations to float32 vectors, keeping `batch_dims` leading axes."""
    return jnp.reshape(obs, obs.shape[:batch_dims] + (-1,)).astype(jnp.float32)


def reset(env: Any, env_params: Any, key: jax.Array, num_envs: int) -> tuple[jax.Array, Any]:
    """Resets `num_envs` environments: `(obs [num_envs, *obs_shape], env_states)`."""
    with _THEIRS():
        obs, states = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(key, num_envs), env_params
        )
    return encode(env, env_params, obs, 1), states


class EnvStep(NamedTuple):
    """What one environment step returns to an agent (leading axis: the environments).

    Attributes:
      obs: observation after the step, after the automatic reset (the next `obs_tm1`).
      env_state: environment states after the step and the reset.
      reward: reward of the step.
      terminated: the step reached a terminal state: no value beyond it.
      truncated: the time limit cut the episode: its value is bootstrapped.
      next_obs: observation reached by the step, before any reset
        (`info["final_observation"]`): the `obs_t` of the stored transition.
    """

    obs: jax.Array
    env_state: Any
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array


def step(env: Any, env_params: Any, key: jax.Array, env_state: Any, action: jax.Array) -> EnvStep:
    """Steps every environment once (one key each, split from `key`)."""
    num_envs = action.shape[0]
    with _THEIRS():
        obs, env_state, reward, terminated, truncated, info = jax.vmap(
            env.step, in_axes=(0, 0, 0, None)
        )(jax.random.split(key, num_envs), env_state, action, env_params)
    return EnvStep(
        obs=encode(env, env_params, obs, 1),
        env_state=env_state,
        reward=reward.astype(jnp.float32),
        terminated=terminated,
        truncated=truncated,
        next_obs=encode(env, env_params, info["final_observation"], 1),
    )


class Episodes(NamedTuple):
    """Undiscounted returns of the training episodes, per environment.

    Attributes:
      running: return of the episode in progress.
      last: return of the last finished episode (0 until one finishes).
      finished: number of finished episodes.
    """

    running: jax.Array
    last: jax.Array
    finished: jax.Array


def episodes_init(num_envs: int) -> Episodes:
    zeros = jnp.zeros((num_envs,), jnp.float32)
    return Episodes(running=zeros, last=zeros, finished=jnp.zeros((num_envs,), jnp.int32))


def episodes_update(episodes: Episodes, reward: jax.Array, done: jax.Array) -> Episodes:
    """Adds a step's rewards; `done` (terminated or truncated) closes an episode."""
    total = episodes.running + reward
    return Episodes(
        running=jnp.where(done, 0.0, total),
        last=jnp.where(done, total, episodes.last),
        finished=episodes.finished + done.astype(jnp.int32),
    )


def episodes_metrics(episodes: Episodes) -> dict[str, jax.Array]:
    """`episode_return`: mean over environments of their last finished episode's return
    (over those that finished one; 0 before any did). `episodes`: finished so far."""
    seen = episodes.finished > 0
    count = jnp.sum(seen)
    mean = jnp.sum(jnp.where(seen, episodes.last, 0.0)) / jnp.maximum(count, 1)
    return {"episode_return": mean, "episodes": jnp.sum(episodes.finished).astype(jnp.float32)}


def evaluate(
    env: Any, env_params: Any, policy, key: jax.Array, num_episodes: int, max_steps: int
) -> dict[str, jax.Array]:
    """Mean undiscounted return of `num_episodes` episodes of a deterministic policy.

    The episodes run side by side for `max_steps` steps (the time limit); each one counts
    its rewards until it first terminates or is truncated.

    Args:
      env, env_params: the environment.
      policy: `obs [num_episodes, *obs_shape] -> actions [num_episodes, ...]`.
      key: randomness of the start states (and of stochastic dynamics).
      num_episodes: episodes to average.
      max_steps: the environment's time limit.

    Returns:
      `{"return": mean return, "return_std": its standard deviation over episodes}`.
    """
    reset_key, steps_key = jax.random.split(key)
    obs, states = reset(env, env_params, reset_key, num_episodes)

    def body(carry, step_key):
        obs, states, total, done = carry
        out = step(env, env_params, step_key, states, policy(obs))
        total = total + jnp.where(done, 0.0, out.reward)
        done = done | out.terminated | out.truncated
        return (out.obs, out.env_state, total, done), None

    carry = (obs, states, jnp.zeros((num_episodes,)), jnp.zeros((num_episodes,), bool))
    (_, _, total, _), _ = jax.lax.scan(body, carry, jax.random.split(steps_key, max_steps))
    return {"return": jnp.mean(total), "return_std": jnp.std(total)}
