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

The targets may instead follow `stabilizers.periodic(target_period, target_decay)`
(`target="tracker"`, both traced: hard copies, EMAs and no target in one vmapped sweep) or
be the online critics (`target="none"`). With `critic="crossq"` the critics are CrossQ's
(`agents.crossq`): batch renormalization, and the current and next state-actions in one
forward pass.

An episode cut by the time limit is bootstrapped (`s_t` is `info["final_observation"]`);
only `terminated` ends the return.

References:
  Haarnoja et al., Soft actor-critic algorithms and applications, 2018 (learned
  temperature); the authors' code, github.com/rail-berkeley/softlearning.
  Bhatt et al., CrossQ, ICLR 2024.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers
from agents import actor_critic, crossq, offpolicy, replay
from agents.networks import GaussianActor, ensemble_apply


@struct.dataclass
class Config(actor_critic.Config):
    """SAC with automatic entropy tuning: the actor-critic fields (defaults: the paper's;
    1000 random steps) and SAC's own."""

    alpha_learning_rate: float = 3e-4
    """Adam step size of log(alpha)."""
    initial_alpha: float = 1.0
    """Temperature at the start."""
    target_entropy_per_dim: float = -1.0
    """Target entropy per action dimension (the paper's heuristic: -1, i.e. -dim(A))."""
    target: Literal["ema", "tracker", "none"] = struct.field(pytree_node=False, default="ema")
    """The critics' targets: "ema" (decay 1 - tau), "tracker"
    (`stabilizers.periodic(target_period, target_decay)`, both traced) or "none" (the
    online critics behind a stop-gradient)."""
    target_period: int = 1
    """"tracker" target: gradient steps between its EMA steps (a leaf)."""
    target_decay: float = 0.0
    """"tracker" target: the decay of each step (a leaf); 0 is a copy."""
    critic: Literal["mlp", "crossq"] = struct.field(pytree_node=False, default="mlp")
    """"mlp", or "crossq": batch renormalization and one joint forward pass over the
    current and next state-actions, Adam with b1 = 0.5 (`agents.crossq`, Bhatt et al. 2024).
    Without a target ("none") the bootstrap values come from that joint pass."""


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


State = offpolicy.AgentState  # learner: this module's `Learner`
TARGETS = ("ema", "tracker", "none")
CRITICS = ("mlp", "crossq")


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


def _sample(s: actor_critic.Setup, actor_params, obs: jax.Array, key: jax.Array):
    """Actions in [-1, 1]^d and their log densities for a batch of observations."""
    mean, log_std = s.actor.apply(actor_params, obs)
    noise = jax.random.normal(key, mean.shape)
    return jax.vmap(squashed_gaussian)(mean, log_std, noise)


def _actor_loss(actor_params, critic_params, alpha, obs, key, s: actor_critic.Setup):
    a, log_pi = _sample(s, actor_params, obs, key)
    if isinstance(s.critic, crossq.Critic):  # inference mode: the running statistics
        q = crossq.q_values(s.critic, critic_params, obs, s.center + s.scale * a)
    else:
        q = ensemble_apply(s.critic, critic_params, obs, s.center + s.scale * a)  # [C, B]
    return jnp.mean(alpha * log_pi - jnp.min(q, axis=0)), log_pi


def _alpha_loss(log_alpha, log_pi, target_entropy):
    return -jnp.exp(log_alpha) * jnp.mean(jax.lax.stop_gradient(log_pi) + target_entropy)


# --------------------------------------------------------------------------- setup


def _actor(c: Config, center: np.ndarray, scale: np.ndarray, reads: dict) -> GaussianActor:
    return GaussianActor(hidden=c.hidden, action_size=int(center.shape[0]), **reads)


def _setup(config: Config) -> actor_critic.Setup:
    s = actor_critic.setup(offpolicy.static(config), _actor)
    if config.critic not in CRITICS:
        raise ValueError(f"critic must be one of {CRITICS}; got {config.critic!r}")
    if config.target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {config.target!r}")
    return s._replace(critic=crossq.Critic(config.hidden)) if config.critic == "crossq" else s


def check(config: Config) -> None:
    """Raises a ValueError for a config SAC cannot run."""
    _setup(config)


def _target_tx(config: Config) -> optax.GradientTransformation:
    if config.target == "tracker":
        return stabilizers.periodic(config.target_period, config.target_decay)
    if config.target == "none":
        return stabilizers.ema(0.0)
    return stabilizers.ema(1.0 - jnp.asarray(config.tau, jnp.float32))


def _adam(config: Config, learning_rate) -> optax.GradientTransformation:
    return (
        crossq.optimizer(learning_rate) if config.critic == "crossq" else optax.adam(learning_rate)
    )


def _critic_opt_init(config: Config, critic_params) -> optax.OptState:
    if config.critic == "crossq":
        return crossq.optimizer(config.critic_learning_rate).init(critic_params["params"])
    return actor_critic.critic_optimizer(config).init(critic_params)


# --------------------------------------------------------------------------- init / step


def init(key: jax.Array, config: Config) -> State:
    """A fresh run: actor, critic ensemble and its target, temperature, empty buffer."""

    def learner_init(actor_params, critic_params) -> Learner:
        log_alpha = jnp.log(jnp.asarray(config.initial_alpha, jnp.float32))
        zero = jnp.zeros(())
        return Learner(
            actor_params=actor_params,
            critic_params=critic_params,
            target_critic_params=critic_params,
            log_alpha=log_alpha,
            actor_opt_state=_adam(config, config.actor_learning_rate).init(actor_params),
            critic_opt_state=_critic_opt_init(config, critic_params),
            alpha_opt_state=optax.adam(config.alpha_learning_rate).init(log_alpha),
            target_state=_target_tx(config).init(critic_params),
            critic_loss=zero,
            actor_loss=zero,
            entropy=zero,
            q=zero,
        )

    return actor_critic.init(key, config, _setup(config), learner_init)


def _explore(
    actor_params, obs: jax.Array, key: jax.Array, config: Config, s: actor_critic.Setup
) -> jax.Array:
    """A draw of the squashed Gaussian policy, rescaled to the action box."""
    squashed, _ = _sample(s, actor_params, obs, key)
    return s.center + s.scale * squashed


def _gradient_step(
    learner: Learner,
    buffer: replay.Replay,
    key: jax.Array,
    config: Config,
    s: actor_critic.Setup,
) -> Learner:
    """Critics, then actor, then temperature, then targets, on one minibatch."""
    sample_key, next_key, actor_key = jax.random.split(key, 3)
    batch = replay.sample(buffer, sample_key, config.batch_size)
    alpha = jnp.exp(learner.log_alpha)

    # Critics: soft clipped double-Q target with a' drawn from the current policy.
    a_t, log_pi_t = _sample(s, learner.actor_params, batch.obs_t, next_key)
    discount_t = config.gamma * (1.0 - batch.terminated_t.astype(jnp.float32))

    def targets(q_t):
        return jax.vmap(soft_q_target, in_axes=(0, 0, 1, 0, None))(
            batch.r_t, discount_t, q_t, log_pi_t, alpha
        )

    if config.critic == "crossq":
        critics = _crossq_step(learner, batch, s.center + s.scale * a_t, targets, config, s)
    else:
        q_t = ensemble_apply(
            s.critic, learner.target_critic_params, batch.obs_t, s.center + s.scale * a_t
        )
        y = targets(q_t)
        critics = actor_critic.critic_step(learner, batch, y, config, s, weight=0.5)

    # Actor, by the reparameterisation trick, against the updated critics.
    (actor_loss, log_pi), actor_grads = jax.value_and_grad(_actor_loss, has_aux=True)(
        learner.actor_params, critics.params, alpha, batch.obs_tm1, actor_key, s
    )
    updates, actor_opt_state = _adam(config, config.actor_learning_rate).update(
        actor_grads, learner.actor_opt_state
    )
    actor_params = optax.apply_updates(learner.actor_params, updates)

    # Temperature toward the target entropy.
    target_entropy = config.target_entropy_per_dim * s.action_size
    alpha_grad = jax.grad(_alpha_loss)(learner.log_alpha, log_pi, target_entropy)
    alpha_update, alpha_opt_state = optax.adam(config.alpha_learning_rate).update(
        alpha_grad, learner.alpha_opt_state
    )
    log_alpha = learner.log_alpha + alpha_update

    target_critic_params, target_state = stabilizers.update_target(
        _target_tx(config), critics.params, learner.target_critic_params, learner.target_state
    )
    return Learner(
        actor_params=actor_params,
        critic_params=critics.params,
        target_critic_params=target_critic_params,
        log_alpha=log_alpha,
        actor_opt_state=actor_opt_state,
        critic_opt_state=critics.opt_state,
        alpha_opt_state=alpha_opt_state,
        target_state=target_state,
        critic_loss=critics.loss,
        actor_loss=actor_loss,
        entropy=-jnp.mean(log_pi),
        q=critics.q,
    )


def _crossq_step(
    learner: Learner, batch, a_t, targets, config: Config, s
) -> actor_critic.CriticStep:
    """CrossQ's critic step; without a target its own joint pass gives the bootstrap."""
    target = None if config.target == "none" else learner.target_critic_params
    params, opt_state, loss, q = crossq.critic_step(
        learner.critic_params,
        learner.critic_opt_state,
        batch,
        a_t,
        targets,
        target,
        config.critic_learning_rate,
        s.critic,
    )
    return actor_critic.CriticStep(params, opt_state, loss, q)


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    """One vectorised env step (num_envs env steps) and one gradient step per env step."""
    state = actor_critic.step(state, config, _setup(config), _explore, _gradient_step)
    learner = state.learner
    return state, actor_critic.metrics(
        state,
        learner.target_critic_params,
        alpha=jnp.exp(learner.log_alpha),
        entropy=learner.entropy,
    )


def _mean_action(actor_params, obs: jax.Array, s: actor_critic.Setup) -> jax.Array:
    mean, _ = s.actor.apply(actor_params, obs)
    return s.center + s.scale * jnp.tanh(mean)


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """Mean return of `eval_episodes` episodes of the mean action (`return`)."""
    return actor_critic.evaluate(state, config, key, _setup(config), _mean_action)


units = actor_critic.units
RUN_LENGTH_FIELDS = ("total_steps",)
"""Config fields that only set the run's length (no schedule depends on it)."""


PRESETS = {
    "pendulum": Config(
        hidden=(64, 64),
        batch_size=128,
        gamma=0.98,
        actor_learning_rate=1e-3,
        critic_learning_rate=1e-3,
        alpha_learning_rate=1e-3,
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

- "pendulum": Pendulum-v1 at 20k env steps: the rl-baselines3-zoo settings for this
  budget (`hyperparams/sac.yml`: gamma 0.98, Adam 1e-3) on 64-64 networks and batches of
  128, smaller than the authors' so that a study of many seeds fits a CPU.
- "brax": Brax locomotion (hopper): the SAC paper's settings (Adam 3e-4, gamma 0.99, tau
  0.005, target entropy -dim(A)) with 5k random steps, on 64-64 networks and batches of
  128 so that a study of several seeds fits a CPU (`benchmarks.brax_study`). Brax's
  training notebook trains hopper's SAC with Adam 6e-4, discount 0.997, batches of 512,
  reward scaling 30 and normalised observations over 6.5M env steps; the last two are not
  part of this SAC, and 0.997 propagates reward too slowly for a budget of 100k steps.
- "smoke": a run of a few seconds on a CPU, to check an install.
"""
