"""The off-policy continuous-control core that TD3 (with DDPG) and SAC share.

Both algorithms run the same loop around different losses: every `step` takes one action
in each of `num_envs` environments, uniformly random over the action box for the first
`learning_starts` env steps and the algorithm's exploration policy after them, stores the
transitions and, once learning has started, makes one gradient step per env step. Each
gradient step regresses an ensemble of `num_critics` independently initialised critics on
a target `y` the algorithm computes,

    loss = sum_i weight * mean_batch (Q_i(s_{t-1}, a_{t-1}) - y)^2,

then updates the actor and the targets the algorithm's way. Evaluation runs a
deterministic policy. What differs (the target `y`, the actor's loss and update, the
exploration, the learner's state) stays in `agents.td3` and `agents.sac`; the learner of
either holds at least `actor_params`, `critic_params`, `critic_opt_state`, `critic_loss`,
`actor_loss` and `q`.

References:
  Fujimoto, van Hoof & Meger, Addressing function approximation error in actor-critic
  methods (TD3), ICML 2018.
  Haarnoja et al., Soft actor-critic algorithms and applications, 2018.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

import stabilizers
from agents import envs, networks, offpolicy, replay
from agents.networks import Critic, ensemble_apply, ensemble_init

BRAX_BUDGET = dict(
    env="brax:hopper",
    total_steps=100_000,
    buffer_size=100_000,
    hidden=(64, 64),
    batch_size=128,
    learning_starts=5_000,
)
"""The budget of TD3's and SAC's "brax" presets: 100k env steps of hopper with 64-64
networks and batches of 128, sized so that both algorithms x 6 seeds fit a 2-core CPU."""


@struct.dataclass
class Config:
    """The fields every actor-critic agent has (defaults: the TD3 and SAC papers')."""

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
    network: networks.Network = struct.field(pytree_node=False, default="auto")
    """What reads the observation: "auto" (MinAtar's 3x3x16 convolution for images,
    else an MLP on the flattened observation), "mlp" or "conv"."""
    num_critics: int = struct.field(pytree_node=False, default=2)
    """Critics in the ensemble; the targets take their minimum (clipped double-Q)."""
    learning_starts: int = struct.field(pytree_node=False, default=1_000)
    """Env steps of uniformly random actions before the first gradient step."""
    eval_episodes: int = struct.field(pytree_node=False, default=10)
    """Episodes of the deterministic policy per evaluation."""
    actor_learning_rate: float = 3e-4
    """Adam step size of the actor."""
    critic_learning_rate: float = 3e-4
    """Adam step size of the critics."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Soft target update rate (the targets' EMA decay is 1 - tau)."""


class Setup(NamedTuple):
    """What the static fields of a config fix: the environment, its observations' shape
    (`agents.envs.observation_shape`), its action box (`low`, `high`, `center`, `scale`:
    shape `[1, action_size]`) and the networks (`torso`: "mlp" or "conv")."""

    env: Any
    env_params: Any
    obs_shape: tuple[int, ...]
    torso: str
    action_size: int
    low: np.ndarray
    high: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    max_steps: int
    actor: nn.Module
    critic: Critic


ActorFor = Callable[[Any, np.ndarray, np.ndarray, dict], nn.Module]
"""`(config, center, scale, reads) -> actor module`, `center` and `scale` of shape
`[action_size]`, `reads` the keyword arguments that say how it reads an observation
(`obs_ndim`, `conv`; see `agents.networks.features`)."""


@offpolicy.setup_cache
def setup(c: Config, actor_for: ActorFor, positive: tuple[str, ...] = ()) -> Setup:
    """Checks the static config `c` (`offpolicy.static`) and builds its `Setup`.

    Args:
      c: the static config; its module's last name (td3, ddpg, sac) names the algorithm
        in error messages.
      actor_for: builds the algorithm's actor.
      positive: the algorithm's own fields that must be integers >= 1.
    """
    name = type(c).__module__.rsplit(".", 1)[-1]
    env, env_params = envs.make(c.env)
    low, high = envs.action_bounds(env, env_params, c.env, name)
    obs_shape = envs.observation_shape(env, env_params, c.env)
    torso = networks.torso(c.network, obs_shape, c.env)
    common = ("num_envs", "buffer_size", "batch_size", "num_critics")
    offpolicy.check_common(c, (*common, *positive, "eval_episodes"), ("learning_starts",))
    if c.learning_starts % c.num_envs:
        raise ValueError(
            f"learning_starts ({c.learning_starts}) must be a multiple of num_envs ({c.num_envs})"
        )
    center, scale = (high + low) / 2, (high - low) / 2
    reads = {"obs_ndim": len(obs_shape), "conv": torso == "conv"}
    return Setup(
        env=env,
        env_params=env_params,
        obs_shape=obs_shape,
        torso=torso,
        action_size=int(low.shape[0]),
        low=low[None],
        high=high[None],
        center=center[None],
        scale=scale[None],
        max_steps=envs.max_episode_steps(env_params, c.env),
        actor=actor_for(c, center, scale, reads),
        critic=Critic(hidden=c.hidden, **reads),
    )


def critic_optimizer(config: Config) -> optax.GradientTransformation:
    return optax.adam(config.critic_learning_rate)


def init(
    key: jax.Array, config: Config, s: Setup, learner_init: Callable[[Any, Any], Any]
) -> offpolicy.AgentState:
    """A fresh run: actor and critic ensemble (`learner_init(actor_params, critic_params)`
    builds the learner around them), an empty buffer, reset environments."""
    actor_key, critic_key, reset_key, key = jax.random.split(key, 4)
    obs0, act0 = jnp.zeros(s.obs_shape), jnp.zeros((s.action_size,))
    actor_params = s.actor.init(actor_key, obs0)
    critic_params = ensemble_init(s.critic, critic_key, config.num_critics, obs0, act0)
    obs, env_state = envs.reset(s.env, s.env_params, reset_key, config.num_envs)
    example = replay.Transition(obs0, act0, jnp.zeros(()), jnp.zeros((), bool), obs0)
    buffer = replay.init(example, config.buffer_size)
    return offpolicy.start(learner_init(actor_params, critic_params), buffer, obs, env_state, key)


def critic_loss(
    critic_params, batch: replay.Transition, y: jax.Array, s: Setup, weight: float
) -> tuple[jax.Array, jax.Array]:
    """`sum_i weight * mean_batch (Q_i(s_{t-1}, a_{t-1}) - y)^2` and the mean Q."""
    q_tm1 = ensemble_apply(s.critic, critic_params, batch.obs_tm1, batch.a_tm1)  # [C, B]
    loss = jnp.sum(weight * jnp.mean(jnp.square(q_tm1 - y[None, :]), axis=1))
    return loss, jnp.mean(q_tm1)


class CriticStep(NamedTuple):
    """The critics after one gradient step, with the step's loss and mean Q(s, a)."""

    params: Any
    opt_state: optax.OptState
    loss: jax.Array
    q: jax.Array


def critic_step(
    learner: Any,
    batch: replay.Transition,
    y: jax.Array,
    config: Config,
    s: Setup,
    weight: float = 1.0,
) -> CriticStep:
    """One Adam step of the critic ensemble on `critic_loss` toward the constant `y`."""
    (loss, q), grads = jax.value_and_grad(critic_loss, has_aux=True)(
        learner.critic_params, batch, jax.lax.stop_gradient(y), s, weight
    )
    updates, opt_state = critic_optimizer(config).update(
        grads, learner.critic_opt_state, learner.critic_params
    )
    return CriticStep(optax.apply_updates(learner.critic_params, updates), opt_state, loss, q)


GradientStep = Callable[[Any, replay.Replay, jax.Array, Any, Setup], Any]
"""`(learner, buffer, key, config, setup) -> learner`: one gradient step of an algorithm."""

Explore = Callable[[Any, jax.Array, jax.Array, Any, Setup], jax.Array]
"""`(actor_params, obs, key, config, setup) -> actions in the box`: exploration."""


def learn(
    learner: Any,
    buffer: replay.Replay,
    key: jax.Array,
    config: Config,
    s: Setup,
    gradient_step: GradientStep,
) -> Any:
    """One gradient step per env step of this `step` (`num_envs` of them)."""

    def one(learner, k):
        return gradient_step(learner, buffer, k, config, s)

    return offpolicy.repeat(one, learner, key, config.num_envs)


def step(
    state: offpolicy.AgentState,
    config: Config,
    s: Setup,
    explore: Explore,
    gradient_step: GradientStep,
) -> offpolicy.AgentState:
    """One vectorised env step (num_envs env steps) and one gradient step per env step."""
    key, random_key, policy_key, env_key, learn_key = jax.random.split(state.key, 5)
    env_steps = state.count.value * config.num_envs  # before this step

    shape = (config.num_envs, s.action_size)
    random_action = jax.random.uniform(random_key, shape, minval=s.low, maxval=s.high)
    policy_action = explore(state.learner.actor_params, state.obs, policy_key, config, s)
    action = jnp.where(env_steps < config.learning_starts, random_action, policy_action)

    out = envs.step(s.env, s.env_params, env_key, state.env_state, action)
    state = offpolicy.record(state, action, out, key)
    # `count` is shared by every seed: a real branch under the harness's vmap.
    due = env_steps + config.num_envs > config.learning_starts
    learn_now = functools.partial(
        learn, key=learn_key, config=config, s=s, gradient_step=gradient_step
    )
    return offpolicy.learn_if(due, learn_now, state)


def metrics(
    state: offpolicy.AgentState, target_critic_params: Any, **extra: jax.Array
) -> dict[str, jax.Array]:
    """The training metrics of a step: losses, mean Q, the critics' lag behind their
    targets (`stabilizers.lag`), the training-episode returns and `extra`."""
    learner = state.learner
    return {
        "critic_loss": learner.critic_loss,
        "actor_loss": learner.actor_loss,
        "q": learner.q,
        **extra,
        "lag": stabilizers.lag(learner.critic_params, target_critic_params),
        **envs.episodes_metrics(state.episodes),
    }


def evaluate(
    state: offpolicy.AgentState,
    config: Config,
    key: jax.Array,
    s: Setup,
    policy: Callable[[Any, jax.Array, Setup], jax.Array],
) -> dict[str, jax.Array]:
    """Mean return of `eval_episodes` episodes of `policy(actor_params, obs, setup)`, a
    deterministic policy (`return`)."""

    def act(obs):
        return policy(state.learner.actor_params, obs, s)

    return envs.evaluate(s.env, s.env_params, act, key, config.eval_episodes, s.max_steps)


def units(config: Config) -> tuple[str, int]:
    return "env_steps", config.num_envs
