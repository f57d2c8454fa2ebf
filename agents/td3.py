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

DDPG as the TD3 paper ran it ("Our DDPG") is this module with one critic,
`policy_delay = 1` and no target smoothing: `PRESETS["ddpg"]`.

An episode cut by the time limit is bootstrapped (`s_t` is `info["final_observation"]`);
only `terminated` ends the return.

References:
  Fujimoto, van Hoof & Meger, Addressing function approximation error in actor-critic
  methods (TD3), ICML 2018; the authors' code, github.com/sfujim/TD3 (TD3.py, main.py).
  Lillicrap et al., Continuous control with deep reinforcement learning (DDPG), 2015.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers
from agents import actor_critic, offpolicy, replay
from agents.networks import DeterministicActor, ensemble_apply, member


@struct.dataclass
class Config(actor_critic.Config):
    """TD3: the actor-critic fields (defaults: the authors' hyperparameters; 1000 random
    steps for a 20k budget) and TD3's own."""

    policy_delay: int = struct.field(pytree_node=False, default=2)
    """Critic steps per actor step; the targets move on the actor's steps."""
    exploration_noise: float = 0.1
    """Std of the Gaussian exploration noise, in units of half the action range."""
    policy_noise: float = 0.2
    """Std of the target policy smoothing noise, in units of half the action range."""
    noise_clip: float = 0.5
    """Clip of the smoothing noise, in units of half the action range."""


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


State = offpolicy.AgentState  # learner: this module's `Learner`


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


def _actor_loss(actor_params, critic_params, obs: jax.Array, s: actor_critic.Setup) -> jax.Array:
    # The first critic only, as in the authors' code.
    first = member(critic_params, 0)
    return -jnp.mean(s.critic.apply(first, obs, s.actor.apply(actor_params, obs)))


# --------------------------------------------------------------------------- setup


def _actor(c: Config, center: np.ndarray, scale: np.ndarray, reads: dict) -> DeterministicActor:
    return DeterministicActor(
        hidden=c.hidden,
        action_size=int(center.shape[0]),
        center=tuple(center.tolist()),
        scale=tuple(scale.tolist()),
        **reads,
    )


def _setup(config: Config) -> actor_critic.Setup:
    return actor_critic.setup(offpolicy.static(config), _actor, ("policy_delay",))


def check(config: Config) -> None:
    """Raises a ValueError for a config TD3 / DDPG cannot run."""
    _setup(config)


def _actor_tx(config: Config) -> optax.GradientTransformation:
    return stabilizers.delayed(optax.adam(config.actor_learning_rate), every=config.policy_delay)


def _target_tx(config: Config) -> optax.GradientTransformation:
    decay = 1.0 - jnp.asarray(config.tau, jnp.float32)
    return stabilizers.delayed(stabilizers.ema(decay), every=config.policy_delay)


# --------------------------------------------------------------------------- init / step


def init(key: jax.Array, config: Config) -> State:
    """A fresh run: actor, critic ensemble, their targets, optimisers, empty buffer."""

    def learner_init(actor_params, critic_params) -> Learner:
        targets = Targets(actor=actor_params, critic=critic_params)
        zero = jnp.zeros(())
        return Learner(
            actor_params=actor_params,
            critic_params=critic_params,
            targets=targets,
            actor_opt_state=_actor_tx(config).init(actor_params),
            critic_opt_state=actor_critic.critic_optimizer(config).init(critic_params),
            target_state=_target_tx(config).init(targets),
            critic_loss=zero,
            actor_loss=zero,
            q=zero,
        )

    return actor_critic.init(key, config, _setup(config), learner_init)


def _explore(
    actor_params, obs: jax.Array, key: jax.Array, config: Config, s: actor_critic.Setup
) -> jax.Array:
    """The actor's action plus N(0, (exploration_noise * scale)^2), clipped to the box."""
    shape = (config.num_envs, s.action_size)
    noise = config.exploration_noise * s.scale * jax.random.normal(key, shape)
    return jnp.clip(s.actor.apply(actor_params, obs) + noise, s.low, s.high)


def _gradient_step(
    learner: Learner,
    buffer: replay.Replay,
    key: jax.Array,
    config: Config,
    s: actor_critic.Setup,
) -> Learner:
    """Critics on a minibatch; on every `policy_delay`-th call also the actor and targets."""
    sample_key, noise_key = jax.random.split(key)
    batch = replay.sample(buffer, sample_key, config.batch_size)

    # Critics: clipped double-Q on a smoothed target action.
    eps = jax.random.normal(noise_key, (config.batch_size, s.action_size))
    clip = config.noise_clip * s.scale
    smoothing = jnp.clip(config.policy_noise * s.scale * eps, -clip, clip)
    a_t = jnp.clip(s.actor.apply(learner.targets.actor, batch.obs_t) + smoothing, s.low, s.high)
    q_t = ensemble_apply(s.critic, learner.targets.critic, batch.obs_t, a_t)  # [C, B]
    discount_t = config.gamma * (1.0 - batch.terminated_t.astype(jnp.float32))
    y = jax.vmap(clipped_double_q_target, in_axes=(0, 0, 1))(batch.r_t, discount_t, q_t)
    critics = actor_critic.critic_step(learner, batch, y, config, s)

    # Actor: `delayed` runs Adam on due steps only; the gradient itself is computed only
    # then (the counter is shared by every seed, so this is a real branch under vmap).
    actor_tx = _actor_tx(config)
    actor_loss, actor_grads = jax.lax.cond(
        actor_tx.is_due(learner.actor_opt_state),
        lambda: jax.value_and_grad(_actor_loss)(
            learner.actor_params, critics.params, batch.obs_tm1, s
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
        Targets(actor=actor_params, critic=critics.params),
        learner.targets,
        learner.target_state,
    )
    return Learner(
        actor_params=actor_params,
        critic_params=critics.params,
        targets=targets,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critics.opt_state,
        target_state=target_state,
        critic_loss=critics.loss,
        actor_loss=actor_loss,
        q=critics.q,
    )


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    """One vectorised env step (num_envs env steps) and one gradient step per env step."""
    state = actor_critic.step(state, config, _setup(config), _explore, _gradient_step)
    return state, actor_critic.metrics(state, state.learner.targets.critic)


def _deterministic(actor_params, obs: jax.Array, s: actor_critic.Setup) -> jax.Array:
    return s.actor.apply(actor_params, obs)


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """Mean return of `eval_episodes` episodes of the deterministic actor (`return`)."""
    return actor_critic.evaluate(state, config, key, _setup(config), _deterministic)


units = actor_critic.units
RUN_LENGTH_FIELDS = ("total_steps",)
"""Config fields that only set the run's length (no schedule depends on it)."""


PRESETS = {
    "ddpg": Config(num_critics=1, policy_delay=1, policy_noise=0.0, noise_clip=0.0),
    "pendulum": Config(
        hidden=(64, 64),
        batch_size=128,
        gamma=0.98,
        actor_learning_rate=1e-3,
        critic_learning_rate=1e-3,
    ),
    "brax": Config(**actor_critic.BRAX_BUDGET),
    "smoke": Config(
        total_steps=300,
        buffer_size=512,
        batch_size=32,
        hidden=(16,),
        learning_starts=100,
        eval_episodes=2,
    ),
}
"""Named configs.

- "ddpg": DDPG as the TD3 paper ran it ("Our DDPG"): one critic, the actor and the targets
  moved after every critic step, no target policy smoothing; TD3's other settings.
- "pendulum": Pendulum-v1 at 20k env steps: the rl-baselines3-zoo settings for this
  budget (`hyperparams/td3.yml`: gamma 0.98, Adam 1e-3) on 64-64 networks and batches of
  128, smaller than the authors' so that a study of many seeds fits a CPU.
- "brax": Brax locomotion (hopper): the TD3 authors' settings (Adam 3e-4, gamma 0.99, tau
  0.005, d = 2, noise 0.1 / 0.2 / 0.5) with 5k random steps (their 25k is a quarter of
  this short a budget) on 64-64 networks and batches of 128, sized so that a study of
  several seeds fits a CPU (`benchmarks.brax_study`).
- "smoke": a run of a few seconds on a CPU, to check an install.
"""
