"""TD3 (and DDPG as its special case) on gymnax, with delayed updates and EMA targets.

Each env step adds one transition to the replay buffer and, after `learning_starts` env
steps of uniformly random actions, makes one gradient step on a minibatch:

  critics:  y = r_t + gamma (1 - terminated_t) min_i Q_bar_i(s_t, a~),
            a~ = clip(pi_bar(s_t) + clip(eps, -c, c), low, high),  eps ~ N(0, sigma^2),
            loss = sum_i mean_batch (Q_i(s_{t-1}, a_{t-1}) - y)^2;
  actor:    every `policy_delay`-th step, minimise -mean_batch Q_1(s, pi(s));
  targets:  on the actor's steps, Q_bar <- (1 - tau) Q_bar + tau Q, pi_bar likewise.

The critics are one vmapped ensemble (`num_critics` members, independently initialised).
The actor's optimiser is `stabilizers.delayed(optax.adam(lr), every=policy_delay)` and
the targets move through `stabilizers.delayed(stabilizers.ema(1 - tau), policy_delay)`,
so both follow the authors' code: the targets are updated in the actor's branch only.
Exploration adds N(0, (exploration_noise * scale)^2) to the actor's action; `sigma` and
`c` are `policy_noise * scale` and `noise_clip * scale`, with `scale` half the width of
the action box (the action bound for Pendulum, 2).

DDPG as the TD3 paper ran it ("Our DDPG"; `agents.ddpg`) is this module with one critic,
`policy_delay = 1` and no target smoothing (`policy_noise = 0`).

An episode cut by the time limit is bootstrapped (`s_t` is `info["final_observation"]`);
only `terminated` ends the return.

References:
  Fujimoto, van Hoof & Meger, Addressing function approximation error in actor-critic
  methods (TD3), ICML 2018; the authors' code, github.com/sfujim/TD3 (TD3.py, main.py).
  Lillicrap et al., Continuous control with deep reinforcement learning (DDPG), 2015.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers
from agents import checks, envs, replay
from agents.networks import Critic, DeterministicActor, ensemble_apply, ensemble_init, member
from stabilizers import shared_count


@struct.dataclass
class Config:
    """TD3 (defaults: the authors' hyperparameters; 1000 random steps for a 20k budget)."""

    env: str = struct.field(pytree_node=False, default="Pendulum-v1")
    """gymnax environment id (continuous, bounded actions)."""
    num_envs: int = struct.field(pytree_node=False, default=1)
    """Environments stepped in parallel; one `step` is `num_envs` env steps and as many
    gradient steps."""
    total_steps: int = struct.field(pytree_node=False, default=20_000)
    """Env steps of a run (the default of `--total-steps`)."""
    buffer_size: int = struct.field(pytree_node=False, default=200_000)
    """Replay capacity in transitions."""
    batch_size: int = struct.field(pytree_node=False, default=256)
    """Transitions per gradient step."""
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(256, 256))
    """Hidden layer widths of the actor and of each critic."""
    num_critics: int = struct.field(pytree_node=False, default=2)
    """Critics in the ensemble; the target takes their minimum (clipped double-Q)."""
    policy_delay: int = struct.field(pytree_node=False, default=2)
    """Critic steps per actor step; the targets move on the actor's steps."""
    learning_starts: int = struct.field(pytree_node=False, default=1_000)
    """Env steps of uniformly random actions before the first gradient step."""
    eval_episodes: int = struct.field(pytree_node=False, default=10)
    """Deterministic episodes per evaluation."""
    actor_learning_rate: float = 3e-4
    """Adam step size of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam step size of the critics."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Soft target update rate (the targets' EMA decay is 1 - tau)."""
    exploration_noise: float = 0.1
    """Std of the Gaussian exploration noise, in units of half the action range."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise, in units of half the action range."""
    noise_clip: float = 0.5
    """Clip of the smoothing noise, in units of half the action range."""


Item = replay.Transition


class Targets(NamedTuple):
    """The target networks: actor and critic ensemble."""

    actor: Any
    critic: Any


class Learner(NamedTuple):
    """What a gradient step changes.

    Attributes:
      actor_params, critic_params: online actor and critic ensemble.
      targets: their target copies.
      actor_opt_state: `delayed(adam)` state (its count is the critic step count).
      critic_opt_state: Adam's state.
      target_state: `delayed(ema)` state of the targets.
      critic_loss, actor_loss, q: latest losses and mean Q(s, a) of the batch.
    """

    actor_params: Any
    critic_params: Any
    targets: Targets
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    target_state: optax.OptState
    critic_loss: jax.Array
    actor_loss: jax.Array
    q: jax.Array


State = replay.AgentState  # learner: this module's `Learner`


# --------------------------------------------------------------------------- losses


def clipped_double_q_target(r_t: jax.Array, discount_t: jax.Array, q_t: jax.Array) -> jax.Array:
    """`r_t + discount_t * min_i q_t[i]` for one transition (TD3's clipped double-Q).

    Args:
      r_t: reward, scalar.
      discount_t: `gamma * (1 - terminated_t)`, scalar.
      q_t: the target critics' values at (s_t, a~), `[num_critics]`.
    """
    if q_t.ndim != 1 or r_t.ndim != 0:
        raise ValueError("clipped_double_q_target takes one transition: q_t of shape [critics]")
    return r_t + discount_t * jnp.min(q_t)


# --------------------------------------------------------------------------- setup


class _Setup(NamedTuple):
    env: Any
    env_params: Any
    obs_size: int
    action_size: int
    low: np.ndarray
    high: np.ndarray
    scale: np.ndarray  # half the action range (low, high, scale: shape [1, action_size])
    max_steps: int
    actor: DeterministicActor
    critic: Critic


def _algo_name(config: Config) -> str:
    return type(config).__module__.rsplit(".", 1)[-1]


def check(config: Config) -> None:
    """Raises a ValueError for a config TD3 / DDPG cannot run."""
    _setup(checks.static(config))


@functools.lru_cache(maxsize=64)
def _setup(c: Config) -> _Setup:
    name = _algo_name(c)
    env, env_params = envs.make(c.env)
    low, high = envs.action_bounds(env, env_params, c.env, name)
    obs_size = envs.observation_size(env, env_params, c.env)
    positive = ("num_envs", "buffer_size", "batch_size", "num_critics", "policy_delay")
    checks.check_common(c, (*positive, "eval_episodes"), ("learning_starts",))
    if c.learning_starts % c.num_envs:
        raise ValueError(
            f"learning_starts ({c.learning_starts}) must be a multiple of num_envs ({c.num_envs})"
        )
    scale = (high - low) / 2
    return _Setup(
        env=env,
        env_params=env_params,
        obs_size=obs_size,
        action_size=int(low.shape[0]),
        low=low[None],
        high=high[None],
        scale=scale[None],
        max_steps=envs.max_episode_steps(env_params, c.env),
        actor=DeterministicActor(
            hidden=c.hidden,
            action_size=int(low.shape[0]),
            center=tuple(((high + low) / 2).tolist()),
            scale=tuple(scale.tolist()),
        ),
        critic=Critic(hidden=c.hidden),
    )


def _actor_tx(config: Config) -> optax.GradientTransformation:
    return stabilizers.delayed(optax.adam(config.actor_learning_rate), every=config.policy_delay)


def _critic_tx(config: Config) -> optax.GradientTransformation:
    return optax.adam(config.critic_learning_rate)


def _target_tx(config: Config) -> optax.GradientTransformation:
    decay = 1.0 - jnp.asarray(config.tau, jnp.float32)
    return stabilizers.delayed(stabilizers.ema(decay), every=config.policy_delay)


# --------------------------------------------------------------------------- init / step


def init(key: jax.Array, config: Config) -> State:
    """A fresh run: actor, critic ensemble, their targets, optimisers, empty buffer."""
    s = _setup(checks.static(config))
    actor_key, critic_key, reset_key, key = jax.random.split(key, 4)
    obs0, act0 = jnp.zeros((s.obs_size,)), jnp.zeros((s.action_size,))
    actor_params = s.actor.init(actor_key, obs0)
    critic_params = ensemble_init(s.critic, critic_key, config.num_critics, obs0, act0)
    obs, env_state = envs.reset(s.env, s.env_params, reset_key, config.num_envs)
    targets = Targets(actor=actor_params, critic=critic_params)
    example = Item(obs0, act0, jnp.zeros(()), jnp.zeros((), bool), obs0)
    zero = jnp.zeros(())
    learner = Learner(
        actor_params=actor_params,
        critic_params=critic_params,
        targets=targets,
        actor_opt_state=_actor_tx(config).init(actor_params),
        critic_opt_state=_critic_tx(config).init(critic_params),
        target_state=_target_tx(config).init(targets),
        critic_loss=zero,
        actor_loss=zero,
        q=zero,
    )
    return State(
        learner=learner,
        replay=replay.init(example, config.buffer_size),
        env_state=env_state,
        obs=obs,
        episodes=envs.episodes_init(config.num_envs),
        key=key,
        count=shared_count(),
    )


def _critic_loss(critic_params, batch: Item, y: jax.Array, s: _Setup):
    q_tm1 = ensemble_apply(s.critic, critic_params, batch.obs_tm1, batch.a_tm1)  # [C, B]
    return jnp.sum(jnp.mean(jnp.square(q_tm1 - y[None, :]), axis=1)), jnp.mean(q_tm1)


def _actor_loss(actor_params, critic_params, obs: jax.Array, s: _Setup) -> jax.Array:
    # The first critic only, as in the authors' code.
    first = member(critic_params, 0)
    return -jnp.mean(s.critic.apply(first, obs, s.actor.apply(actor_params, obs)))


def _gradient_step(
    learner: Learner, buffer: replay.Replay, key: jax.Array, config: Config, s: _Setup
) -> Learner:
    sample_key, noise_key = jax.random.split(key)
    batch = replay.sample(buffer, sample_key, config.batch_size)

    # Critics: clipped double-Q on a smoothed target action.
    noise = jax.random.normal(noise_key, (config.batch_size, s.action_size))
    clip = config.noise_clip * s.scale
    noise = jnp.clip(config.policy_noise * s.scale * noise, -clip, clip)
    a_t = jnp.clip(s.actor.apply(learner.targets.actor, batch.obs_t) + noise, s.low, s.high)
    q_t = ensemble_apply(s.critic, learner.targets.critic, batch.obs_t, a_t)  # [C, B]
    discount_t = config.gamma * (1.0 - batch.terminated_t.astype(jnp.float32))
    y = jax.vmap(clipped_double_q_target, in_axes=(0, 0, 1))(batch.r_t, discount_t, q_t)
    (critic_loss, q), grads = jax.value_and_grad(_critic_loss, has_aux=True)(
        learner.critic_params, batch, jax.lax.stop_gradient(y), s
    )
    updates, critic_opt_state = _critic_tx(config).update(
        grads, learner.critic_opt_state, learner.critic_params
    )
    critic_params = optax.apply_updates(learner.critic_params, updates)

    # Actor: `delayed` runs Adam on due steps only; the gradient itself is computed only
    # then (the counter is shared by every seed, so this is a real branch under vmap).
    actor_tx = _actor_tx(config)
    due = actor_tx.is_due(learner.actor_opt_state)
    actor_loss, actor_grads = jax.lax.cond(
        due,
        lambda: jax.value_and_grad(_actor_loss)(
            learner.actor_params, critic_params, batch.obs_tm1, s
        ),
        lambda: (learner.actor_loss, jax.tree.map(jnp.zeros_like, learner.actor_params)),
    )
    updates, actor_opt_state = actor_tx.update(
        actor_grads, learner.actor_opt_state, learner.actor_params
    )
    actor_params = optax.apply_updates(learner.actor_params, updates)

    # Targets: EMA on the actor's steps.
    targets, target_state = stabilizers.update_target(
        _target_tx(config),
        Targets(actor=actor_params, critic=critic_params),
        learner.targets,
        learner.target_state,
    )
    return Learner(
        actor_params=actor_params,
        critic_params=critic_params,
        targets=targets,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        target_state=target_state,
        critic_loss=critic_loss,
        actor_loss=actor_loss,
        q=q,
    )


def _learn(
    learner: Learner, buffer: replay.Replay, key: jax.Array, config: Config, s: _Setup
) -> Learner:
    """One gradient step per env step of this `step` (`num_envs` of them)."""
    grad_step = lambda lr, k: _gradient_step(lr, buffer, k, config, s)  # noqa: E731
    return replay.repeat(grad_step, learner, key, config.num_envs)


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    """One vectorised env step (num_envs env steps) and one gradient step per env step."""
    s = _setup(checks.static(config))
    key, random_key, noise_key, env_key, learn_key = jax.random.split(state.key, 5)
    env_steps = state.count.value * config.num_envs  # before this step

    shape = (config.num_envs, s.action_size)
    random_action = jax.random.uniform(random_key, shape, minval=s.low, maxval=s.high)
    noise = config.exploration_noise * s.scale * jax.random.normal(noise_key, shape)
    policy_action = s.actor.apply(state.learner.actor_params, state.obs) + noise
    action = jnp.where(
        env_steps < config.learning_starts, random_action, jnp.clip(policy_action, s.low, s.high)
    )

    out = envs.step(s.env, s.env_params, env_key, state.env_state, action)
    state = replay.record(state, action, out, key)
    # `count` is shared by every seed: a real branch under the harness's vmap.
    due = env_steps + config.num_envs > config.learning_starts
    state = replay.learn_if(due, lambda lr, buf: _learn(lr, buf, learn_key, config, s), state)
    learner = state.learner
    return state, {
        "critic_loss": learner.critic_loss,
        "actor_loss": learner.actor_loss,
        "q": learner.q,
        "lag": stabilizers.lag(learner.critic_params, learner.targets.critic),
        **envs.episodes_metrics(state.episodes),
    }


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """Mean return of `eval_episodes` episodes of the deterministic actor (`return`)."""
    s = _setup(checks.static(config))

    def policy(obs):
        return s.actor.apply(state.learner.actor_params, obs)

    return envs.evaluate(s.env, s.env_params, policy, key, config.eval_episodes, s.max_steps)


def units(config: Config) -> tuple[str, int]:
    return "env_steps", config.num_envs


PRESETS = {
    "smoke": Config(
        total_steps=300,
        buffer_size=512,
        batch_size=32,
        hidden=(16,),
        learning_starts=100,
        eval_episodes=2,
    ),
}
"""Named configs. "smoke": a run of a few seconds on a CPU, to check an install."""
