"""SAC with a learned temperature on gymnax, with EMA targets from `stabilizers`.

Each env step adds one transition to the replay buffer and, after `learning_starts` env
steps of uniformly random actions, makes one gradient step on a minibatch (critics, then
actor, then temperature, then targets, as in the authors' softlearning code):

  critics:     y = r_t + gamma (1 - terminated_t) (min_i Q_bar_i(s_t, a') - alpha log pi(a'|s_t)),
               a' ~ pi(.|s_t);  loss = sum_i 0.5 mean_batch (Q_i(s_{t-1}, a_{t-1}) - y)^2;
  actor:       minimise mean_batch (alpha log pi(a~|s) - min_i Q_i(s, a~)),  a~ ~ pi(.|s)
               by the reparameterisation a~ = tanh(mu(s) + sigma(s) eps);
  temperature: minimise -alpha mean_batch (log pi(a~|s) + H_target), alpha = exp(log_alpha),
               with H_target = target_entropy_per_dim * dim(A) (the paper's -dim(A));
  targets:     Q_bar <- (1 - tau) Q_bar + tau Q after every step (`stabilizers.ema`).

The policy is a tanh-squashed Gaussian; `log pi` is the density of the squashed action in
[-1, 1]^d (the change of variables uses the exact `log(1 - tanh(u)^2) = 2 (log 2 - u -
softplus(-2u))`), which the environment sees rescaled to its action box. The critics are
one vmapped ensemble of independently initialised members.

An episode cut by the time limit is bootstrapped (`s_t` is `info["final_observation"]`);
only `terminated` ends the return.

References:
  Haarnoja et al., Soft actor-critic algorithms and applications, 2018 (learned
  temperature); the authors' code, github.com/rail-berkeley/softlearning.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers
from agents import checks, envs, replay
from agents.networks import Critic, GaussianActor, ensemble_apply, ensemble_init
from stabilizers import shared_count


@struct.dataclass
class Config:
    """SAC with automatic entropy tuning (defaults: the paper's; 1000 random steps)."""

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
    """Critics in the ensemble; targets and actor use their minimum."""
    learning_starts: int = struct.field(pytree_node=False, default=1_000)
    """Env steps of uniformly random actions before the first gradient step."""
    eval_episodes: int = struct.field(pytree_node=False, default=10)
    """Deterministic episodes (the mean action) per evaluation."""
    actor_learning_rate: float = 3e-4
    """Adam step size of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam step size of the critics."""
    alpha_learning_rate: float = 3e-4
    """Adam step size of log(alpha)."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Soft target update rate (the targets' EMA decay is 1 - tau)."""
    initial_alpha: float = 1.0
    """Temperature at the start."""
    target_entropy_per_dim: float = -1.0
    """Target entropy per action dimension (the paper's heuristic: -1, i.e. -dim(A))."""


Item = replay.Transition


class Learner(NamedTuple):
    """What a gradient step changes.

    Attributes:
      actor_params, critic_params: online actor and critic ensemble.
      target_critic_params: the critics' EMA targets (SAC has no target actor).
      log_alpha: log of the temperature.
      actor_opt_state, critic_opt_state, alpha_opt_state: Adam's states.
      target_state: the `ema` state.
      critic_loss, actor_loss, entropy, q: latest values (entropy: -mean log pi).
    """

    actor_params: Any
    critic_params: Any
    target_critic_params: Any
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    target_state: optax.OptState
    critic_loss: jax.Array
    actor_loss: jax.Array
    entropy: jax.Array
    q: jax.Array


State = replay.AgentState  # learner: this module's `Learner`


# --------------------------------------------------------------------------- policy math


def squashed_gaussian(
    mean: jax.Array, log_std: jax.Array, noise: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """A reparameterised tanh-Gaussian sample and its log density, for one state.

    `u = mean + exp(log_std) * noise`, `a = tanh(u)`, and
    `log pi(a) = sum_j [log N(u_j; mean_j, std_j) - log(1 - tanh(u_j)^2)]`, with the
    correction written as `2 (log 2 - u - softplus(-2u))`, exact and finite for any `u`.

    Args:
      mean, log_std: the Gaussian over pre-squash actions, `[action_size]`.
      noise: a standard normal draw, `[action_size]`.

    Returns:
      `(a in (-1, 1)^d, log pi(a))`.
    """
    if mean.ndim != 1 or log_std.shape != mean.shape or noise.shape != mean.shape:
        raise ValueError("squashed_gaussian takes one state: mean, log_std, noise of shape [d]")
    u = mean + jnp.exp(log_std) * noise
    log_normal = -0.5 * jnp.square(noise) - log_std - 0.5 * math.log(2 * math.pi)
    log_det = 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(log_normal - log_det)


def soft_q_target(
    r_t: jax.Array, discount_t: jax.Array, q_t: jax.Array, log_pi_t: jax.Array, alpha: jax.Array
) -> jax.Array:
    """`r_t + discount_t * (min_i q_t[i] - alpha * log_pi_t)` for one transition."""
    if q_t.ndim != 1 or r_t.ndim != 0:
        raise ValueError("soft_q_target takes one transition: q_t of shape [critics]")
    return r_t + discount_t * (jnp.min(q_t) - alpha * log_pi_t)


# --------------------------------------------------------------------------- setup


class _Setup(NamedTuple):
    env: Any
    env_params: Any
    obs_size: int
    action_size: int
    low: np.ndarray
    high: np.ndarray
    center: np.ndarray
    scale: np.ndarray  # low, high, center, scale: shape [1, action_size]
    max_steps: int
    actor: GaussianActor
    critic: Critic


def check(config: Config) -> None:
    """Raises a ValueError for a config SAC cannot run."""
    _setup(checks.static(config))


@functools.lru_cache(maxsize=64)
def _setup(c: Config) -> _Setup:
    env, env_params = envs.make(c.env)
    low, high = envs.action_bounds(env, env_params, c.env, "sac")
    obs_size = envs.observation_size(env, env_params, c.env)
    positive = ("num_envs", "buffer_size", "batch_size", "num_critics", "eval_episodes")
    checks.check_common(c, positive, ("learning_starts",))
    if c.learning_starts % c.num_envs:
        raise ValueError(
            f"learning_starts ({c.learning_starts}) must be a multiple of num_envs ({c.num_envs})"
        )
    return _Setup(
        env=env,
        env_params=env_params,
        obs_size=obs_size,
        action_size=int(low.shape[0]),
        low=low[None],
        high=high[None],
        center=((high + low) / 2)[None],
        scale=((high - low) / 2)[None],
        max_steps=envs.max_episode_steps(env_params, c.env),
        actor=GaussianActor(hidden=c.hidden, action_size=int(low.shape[0])),
        critic=Critic(hidden=c.hidden),
    )


def _target_tx(config: Config) -> optax.GradientTransformation:
    return stabilizers.ema(1.0 - jnp.asarray(config.tau, jnp.float32))


def _sample(s: _Setup, actor_params, obs: jax.Array, key: jax.Array):
    """Actions in [-1, 1]^d and their log densities for a batch of observations."""
    mean, log_std = s.actor.apply(actor_params, obs)
    noise = jax.random.normal(key, mean.shape)
    return jax.vmap(squashed_gaussian)(mean, log_std, noise)


# --------------------------------------------------------------------------- init / step


def init(key: jax.Array, config: Config) -> State:
    """A fresh run: actor, critic ensemble and its target, temperature, empty buffer."""
    s = _setup(checks.static(config))
    actor_key, critic_key, reset_key, key = jax.random.split(key, 4)
    obs0, act0 = jnp.zeros((s.obs_size,)), jnp.zeros((s.action_size,))
    actor_params = s.actor.init(actor_key, obs0)
    critic_params = ensemble_init(s.critic, critic_key, config.num_critics, obs0, act0)
    log_alpha = jnp.log(jnp.asarray(config.initial_alpha, jnp.float32))
    obs, env_state = envs.reset(s.env, s.env_params, reset_key, config.num_envs)
    zero = jnp.zeros(())
    learner = Learner(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        log_alpha=log_alpha,
        actor_opt_state=optax.adam(config.actor_learning_rate).init(actor_params),
        critic_opt_state=optax.adam(config.critic_learning_rate).init(critic_params),
        alpha_opt_state=optax.adam(config.alpha_learning_rate).init(log_alpha),
        target_state=_target_tx(config).init(critic_params),
        critic_loss=zero,
        actor_loss=zero,
        entropy=zero,
        q=zero,
    )
    return State(
        learner=learner,
        replay=replay.init(Item(obs0, act0, zero, jnp.zeros((), bool), obs0), config.buffer_size),
        env_state=env_state,
        obs=obs,
        episodes=envs.episodes_init(config.num_envs),
        key=key,
        count=shared_count(),
    )


def _critic_loss(critic_params, batch: Item, y: jax.Array, s: _Setup):
    q_tm1 = ensemble_apply(s.critic, critic_params, batch.obs_tm1, batch.a_tm1)  # [C, B]
    loss = jnp.sum(0.5 * jnp.mean(jnp.square(q_tm1 - y[None, :]), axis=1))
    return loss, jnp.mean(q_tm1)


def _actor_loss(actor_params, critic_params, alpha, obs, key, s: _Setup):
    a, log_pi = _sample(s, actor_params, obs, key)
    q = ensemble_apply(s.critic, critic_params, obs, s.center + s.scale * a)  # [C, B]
    return jnp.mean(alpha * log_pi - jnp.min(q, axis=0)), log_pi


def _alpha_loss(log_alpha, log_pi, target_entropy):
    return -jnp.exp(log_alpha) * jnp.mean(jax.lax.stop_gradient(log_pi) + target_entropy)


def _gradient_step(
    learner: Learner, buffer: replay.Replay, key: jax.Array, config: Config, s: _Setup
) -> Learner:
    sample_key, next_key, actor_key = jax.random.split(key, 3)
    batch = replay.sample(buffer, sample_key, config.batch_size)
    alpha = jnp.exp(learner.log_alpha)

    # Critics: soft clipped double-Q target with a' drawn from the current policy.
    a_t, log_pi_t = _sample(s, learner.actor_params, batch.obs_t, next_key)
    q_t = ensemble_apply(
        s.critic, learner.target_critic_params, batch.obs_t, s.center + s.scale * a_t
    )
    discount_t = config.gamma * (1.0 - batch.terminated_t.astype(jnp.float32))
    y = jax.vmap(soft_q_target, in_axes=(0, 0, 1, 0, None))(
        batch.r_t, discount_t, q_t, log_pi_t, alpha
    )
    (critic_loss, q), grads = jax.value_and_grad(_critic_loss, has_aux=True)(
        learner.critic_params, batch, jax.lax.stop_gradient(y), s
    )
    updates, critic_opt_state = optax.adam(config.critic_learning_rate).update(
        grads, learner.critic_opt_state
    )
    critic_params = optax.apply_updates(learner.critic_params, updates)

    # Actor, by the reparameterisation trick, against the updated critics.
    (actor_loss, log_pi), grads = jax.value_and_grad(_actor_loss, has_aux=True)(
        learner.actor_params, critic_params, alpha, batch.obs_tm1, actor_key, s
    )
    updates, actor_opt_state = optax.adam(config.actor_learning_rate).update(
        grads, learner.actor_opt_state
    )
    actor_params = optax.apply_updates(learner.actor_params, updates)

    # Temperature toward the target entropy.
    target_entropy = config.target_entropy_per_dim * s.action_size
    grad = jax.grad(_alpha_loss)(learner.log_alpha, log_pi, target_entropy)
    update, alpha_opt_state = optax.adam(config.alpha_learning_rate).update(
        grad, learner.alpha_opt_state
    )
    log_alpha = learner.log_alpha + update

    target_critic_params, target_state = stabilizers.update_target(
        _target_tx(config), critic_params, learner.target_critic_params, learner.target_state
    )
    return Learner(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=target_critic_params,
        log_alpha=log_alpha,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critic_opt_state,
        alpha_opt_state=alpha_opt_state,
        target_state=target_state,
        critic_loss=critic_loss,
        actor_loss=actor_loss,
        entropy=-jnp.mean(log_pi),
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
    key, random_key, policy_key, env_key, learn_key = jax.random.split(state.key, 5)
    env_steps = state.count.value * config.num_envs  # before this step

    shape = (config.num_envs, s.action_size)
    random_action = jax.random.uniform(random_key, shape, minval=s.low, maxval=s.high)
    squashed, _ = _sample(s, state.learner.actor_params, state.obs, policy_key)
    action = jnp.where(
        env_steps < config.learning_starts, random_action, s.center + s.scale * squashed
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
        "alpha": jnp.exp(learner.log_alpha),
        "entropy": learner.entropy,
        "q": learner.q,
        "lag": stabilizers.lag(learner.critic_params, learner.target_critic_params),
        **envs.episodes_metrics(state.episodes),
    }


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """Mean return of `eval_episodes` episodes of the mean action (`return`)."""
    s = _setup(checks.static(config))

    def policy(obs):
        mean, _ = s.actor.apply(state.learner.actor_params, obs)
        return s.center + s.scale * jnp.tanh(mean)

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
