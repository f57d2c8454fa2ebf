"""DQN and Double DQN on gymnax, with the target network as a `stabilizers` transform.

One `step` steps `num_envs` environments once with an epsilon-greedy policy, stores the
transitions, and, once `learning_starts` env steps have been taken, makes one gradient
step every `train_every` env steps on a minibatch drawn uniformly from the replay buffer:

    y_t = r_t + gamma (1 - terminated_t) Q_bar(s_t, argmax_a Q~(s_t, a)),
    loss = mean_batch l(y_t - Q(s_{t-1}, a_{t-1})),

with `Q~ = Q_bar` (DQN: the max of the target network) or `Q~ = Q` (Double DQN), `l` the
square (the CleanRL / PureJaxRL config) or the Huber function, and `Q_bar` the target
network, moved after every gradient step by `stabilizers.periodic` (a hard copy every
`target_every` env steps), `stabilizers.ema` (a soft update, `decay = 1 - tau`) or a copy
at every step (no target network: the online params behind a stop-gradient); "tracker"
is `stabilizers.periodic(target_period, target_decay)` with both traced, so hard copies,
EMAs and no target are one vmapped sweep. With `layer_norm` the Q-network normalizes
each hidden layer before its ReLU (PQN, Gallici et al. 2024).

An episode cut by the time limit is bootstrapped (`s_t` is `info["final_observation"]`);
only `terminated` ends the return.

The default config is CleanRL's `dqn_jax.py` / PureJaxRL's `dqn.py` on CartPole-v1.

References:
  Mnih et al., Human-level control through deep reinforcement learning, Nature 2015.
  van Hasselt, Guez & Silver, Deep reinforcement learning with double Q-learning, AAAI 2016.
  Gallici et al., Simplifying deep temporal difference learning (PQN), 2024.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple, get_args, get_type_hints

import jax
import jax.numpy as jnp
import optax
from flax import struct

import stabilizers
from agents import envs, networks, offpolicy, replay
from agents.networks import ReluMLP


@struct.dataclass
class Config:
    """DQN / Double DQN (defaults: CleanRL's and PureJaxRL's CartPole config)."""

    env: str = struct.field(pytree_node=False, default="CartPole-v1")
    """gymnax environment id (discrete actions)."""
    num_envs: int = struct.field(pytree_node=False, default=10)
    """Environments stepped in parallel; one `step` is `num_envs` env steps."""
    total_steps: int = struct.field(pytree_node=False, default=500_000)
    """Env steps of a run (the default of `--total-steps`)."""
    buffer_size: int = struct.field(pytree_node=False, default=10_000)
    """Replay capacity in transitions."""
    batch_size: int = struct.field(pytree_node=False, default=128)
    """Transitions per gradient step."""
    hidden: tuple[int, ...] = struct.field(pytree_node=False, default=(120, 84))
    """Hidden layer widths of the Q-network (after the convolution, if there is one)."""
    network: networks.Network = struct.field(pytree_node=False, default="auto")
    """What reads the observation: "auto" (MinAtar's 3x3x16 convolution for images,
    else an MLP on the flattened observation), "mlp" or "conv"."""
    optimizer: Literal["adam", "rmsprop"] = struct.field(pytree_node=False, default="adam")
    """"adam", or "rmsprop": centered RMSProp with momentum, eps added to the root (the
    MinAtar DQN's torch.optim.RMSprop)."""
    target: Literal["periodic", "ema", "none", "tracker"] = struct.field(
        pytree_node=False, default="periodic"
    )
    """Target network: "periodic" (hard copy), "ema" (soft, tau), "none", or "tracker"
    (`stabilizers.periodic(target_period, target_decay)`, both traced)."""
    target_every: int = struct.field(pytree_node=False, default=500)
    """Env steps between hard copies of the "periodic" target (a multiple of train_every)."""
    double: bool = struct.field(pytree_node=False, default=False)
    """Double DQN: the online network picks the next action, the target network values it."""
    loss: Literal["mse", "huber"] = struct.field(pytree_node=False, default="mse")
    """TD loss: "mse" (squared error) or "huber"."""
    learning_starts: int = struct.field(pytree_node=False, default=10_000)
    """Env steps of pure exploration before the first gradient step."""
    train_every: int = struct.field(pytree_node=False, default=10)
    """Env steps per gradient step (divides num_envs or is a multiple of it)."""
    epsilon_steps: int = struct.field(pytree_node=False, default=250_000)
    """Env steps over which epsilon falls linearly from epsilon_start to epsilon_end."""
    epsilon_delay: int = struct.field(pytree_node=False, default=0)
    """Env steps before epsilon starts to fall (MinAtar's DQN: its replay start)."""
    eval_episodes: int = struct.field(pytree_node=False, default=10)
    """Greedy episodes per evaluation."""
    replay: Literal["ring", "flashbax"] = struct.field(pytree_node=False, default="ring")
    """Replay buffer: "ring" (shared write position) or "flashbax" (its item buffer)."""
    learning_rate: float = 2.5e-4
    """Step size of the optimizer."""
    rmsprop_decay: float = 0.95
    """RMSProp: decay of the running (centered) second moment."""
    rmsprop_eps: float = 0.01
    """RMSProp: added to the root of the second moment (MinAtar's MIN_SQUARED_GRAD)."""
    rmsprop_momentum: float = 0.95
    """RMSProp: momentum of the scaled updates."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Soft update rate of the "ema" target per gradient step (its decay is 1 - tau)."""
    epsilon_start: float = 1.0
    """Exploration rate at env step 0."""
    epsilon_end: float = 0.05
    """Exploration rate after epsilon_steps env steps."""
    huber_delta: float = 1.0
    """Width of the quadratic region of the Huber loss."""
    target_period: int = 1
    """"tracker" target: gradient steps between its EMA steps (a leaf: a sweep over it is
    one program)."""
    target_decay: float = 0.0
    """"tracker" target: the decay of each step (a leaf). Decay 0 every `target_period`
    gradient steps is a hard copy; decay 0 every step is no target."""
    layer_norm: bool = struct.field(pytree_node=False, default=False)
    """A LayerNorm after each hidden dense layer, before its ReLU (PQN's placement)."""


TARGETS = get_args(get_type_hints(Config)["target"])
Item = replay.Transition


class Learner(NamedTuple):
    """What a gradient step changes.

    Attributes:
      params, target_params: online and target Q-network parameters.
      opt_state: the optimizer's state (Adam or RMSProp).
      target_state: the target tracker's state (periodic, ema).
      loss: the latest TD loss (0 before learning starts).
    """

    params: Any
    target_params: Any
    opt_state: optax.OptState
    target_state: optax.OptState
    loss: jax.Array


State = offpolicy.AgentState  # learner: this module's `Learner`


# --------------------------------------------------------------------------- losses


def q_learning_td(
    q_tm1: jax.Array,
    a_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    q_t_value: jax.Array,
    q_t_selector: jax.Array,
) -> jax.Array:
    """TD error of (Double) Q-learning for one transition (rlax's `double_q_learning`).

    `y = r_t + discount_t * q_t_value[argmax q_t_selector]`, returned as `y - q_tm1[a_tm1]`
    with `y` behind a stop-gradient. DQN passes `q_t_selector = q_t_value` (the max of the
    target network); Double DQN passes the online network's values at `s_t`.

    Args:
      q_tm1: Q-values at s_{t-1}, `[num_actions]`.
      a_tm1: action taken at s_{t-1}, integer scalar.
      r_t: reward, scalar.
      discount_t: `gamma * (1 - terminated_t)`, scalar.
      q_t_value: target-network Q-values at s_t, `[num_actions]`.
      q_t_selector: Q-values at s_t that choose the bootstrap action, `[num_actions]`.

    Returns:
      The TD error, a scalar.
    """
    if q_tm1.ndim != 1 or q_t_value.ndim != 1 or q_t_selector.ndim != 1 or a_tm1.ndim != 0:
        raise ValueError("q_learning_td takes one transition: q-values [A], action scalar")
    target = r_t + discount_t * q_t_value[jnp.argmax(q_t_selector)]
    return jax.lax.stop_gradient(target) - q_tm1[a_tm1]


# --------------------------------------------------------------------------- setup


class _Setup(NamedTuple):
    env: Any
    env_params: Any
    obs_shape: tuple[int, ...]
    num_actions: int
    max_steps: int
    network: ReluMLP
    period: int  # env steps between learning iterations
    grad_steps: int  # gradient steps in such an iteration


def check(config: Config) -> None:
    """Raises a ValueError for a config DQN cannot run (names the field and value)."""
    _setup(offpolicy.static(config))


@offpolicy.setup_cache
def _setup(config_static: Any) -> _Setup:
    c = config_static
    env, env_params = envs.make(c.env)
    num_actions = envs.num_actions(env, env_params, c.env, "dqn")
    obs_shape = envs.observation_shape(env, env_params, c.env)
    torso = networks.torso(c.network, obs_shape, c.env)
    positive = ("num_envs", "buffer_size", "batch_size", "target_every", "train_every")
    nonnegative = ("learning_starts", "epsilon_steps", "epsilon_delay")
    offpolicy.check_common(c, (*positive, "eval_episodes"), nonnegative)
    if c.optimizer not in ("adam", "rmsprop"):
        raise ValueError(f"optimizer must be 'adam' or 'rmsprop'; got {c.optimizer!r}")
    if c.target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}; got {c.target!r}")
    if c.loss not in ("mse", "huber"):
        raise ValueError(f"loss must be 'mse' or 'huber'; got {c.loss!r}")
    replay.check_kind(c.replay)
    if c.train_every % c.num_envs and c.num_envs % c.train_every:
        raise ValueError(
            f"train_every ({c.train_every}) must divide num_envs ({c.num_envs}) or be a "
            "multiple of it: each step makes a whole number of gradient steps"
        )
    period = max(c.train_every, c.num_envs)
    if c.learning_starts % period:
        raise ValueError(
            f"learning_starts ({c.learning_starts}) must be a multiple of "
            f"max(train_every, num_envs) = {period}"
        )
    if c.target == "periodic" and c.target_every % c.train_every:
        raise ValueError(
            f"target_every ({c.target_every}) must be a multiple of train_every "
            f"({c.train_every}): the copy happens after a gradient step"
        )
    return _Setup(
        env=env,
        env_params=env_params,
        obs_shape=obs_shape,
        num_actions=num_actions,
        max_steps=envs.max_episode_steps(env_params, c.env),
        network=ReluMLP(
            (*c.hidden, num_actions),
            obs_ndim=len(obs_shape),
            conv=torso == "conv",
            layer_norm=c.layer_norm,
        ),
        period=period,
        grad_steps=period // c.train_every,
    )


def _target_tx(config: Config) -> optax.GradientTransformation:
    if config.target == "periodic":
        return stabilizers.periodic(config.target_every // config.train_every)
    if config.target == "ema":
        return stabilizers.ema(1.0 - jnp.asarray(config.tau, jnp.float32))
    if config.target == "tracker":
        return stabilizers.periodic(config.target_period, config.target_decay)
    return stabilizers.ema(0.0)  # a copy after every gradient step: y uses the online params


def _optimizer(config: Config) -> optax.GradientTransformation:
    if config.optimizer == "rmsprop":
        # torch.optim.RMSprop(centered=True, momentum, eps) as the MinAtar DQN uses it:
        # m, v running means of g and g^2, update = -lr * trace(g / (sqrt(v - m^2) + eps))
        return optax.rmsprop(
            config.learning_rate,
            decay=config.rmsprop_decay,
            eps=config.rmsprop_eps,
            eps_in_sqrt=False,
            centered=True,
            momentum=config.rmsprop_momentum,
        )
    return optax.adam(config.learning_rate)


def epsilon(config: Config, env_steps: jax.Array) -> jax.Array:
    """epsilon_start for the first epsilon_delay env steps, then a linear decay to
    epsilon_end over epsilon_steps, then constant."""
    frac = jnp.clip((env_steps - config.epsilon_delay) / max(config.epsilon_steps, 1), 0.0, 1.0)
    return config.epsilon_start + frac * (config.epsilon_end - config.epsilon_start)


# --------------------------------------------------------------------------- init / step


def init(key: jax.Array, config: Config) -> State:
    """A fresh run: network, target (= network), optimizer, empty buffer, reset environments."""
    s = _setup(offpolicy.static(config))
    params_key, reset_key, key = jax.random.split(key, 3)
    params = s.network.init(params_key, jnp.zeros(s.obs_shape))
    obs, env_state = envs.reset(s.env, s.env_params, reset_key, config.num_envs)
    example = Item(
        obs_tm1=jnp.zeros(s.obs_shape),
        a_tm1=jnp.zeros((), jnp.int32),
        r_t=jnp.zeros(()),
        terminated_t=jnp.zeros((), bool),
        obs_t=jnp.zeros(s.obs_shape),
    )
    learner = Learner(
        params=params,
        target_params=params,
        opt_state=_optimizer(config).init(params),
        target_state=_target_tx(config).init(params),
        loss=jnp.zeros(()),
    )
    buffer = replay.init(
        example, config.buffer_size, kind=config.replay, batch_size=config.batch_size
    )
    return offpolicy.start(learner, buffer, obs, env_state, key)


def _loss(params, target_params, batch: Item, config: Config, network: ReluMLP) -> jax.Array:
    q_tm1 = network.apply(params, batch.obs_tm1)
    q_t_value = network.apply(target_params, batch.obs_t)
    q_t_selector = network.apply(params, batch.obs_t) if config.double else q_t_value
    discount_t = config.gamma * (1.0 - batch.terminated_t.astype(jnp.float32))
    td = jax.vmap(q_learning_td)(q_tm1, batch.a_tm1, batch.r_t, discount_t, q_t_value, q_t_selector)
    if config.loss == "huber":
        return jnp.mean(optax.huber_loss(td, delta=config.huber_delta))
    return jnp.mean(jnp.square(td))


def _learn(
    learner: Learner, buffer: replay.Replay, key: jax.Array, config: Config, s: _Setup
) -> Learner:
    """`s.grad_steps` gradient steps, each followed by a target update."""
    optimizer, target_tx = _optimizer(config), _target_tx(config)

    def gradient_step(learner, sample_key):
        batch = replay.sample(buffer, sample_key, config.batch_size, kind=config.replay)
        loss, grads = jax.value_and_grad(_loss)(
            learner.params, learner.target_params, batch, config, s.network
        )
        updates, opt_state = optimizer.update(grads, learner.opt_state, learner.params)
        params = optax.apply_updates(learner.params, updates)
        target_params, target_state = stabilizers.update_target(
            target_tx, params, learner.target_params, learner.target_state
        )
        return Learner(params, target_params, opt_state, target_state, loss), loss

    if s.grad_steps == 1:
        return gradient_step(learner, key)[0]
    learner, losses = jax.lax.scan(gradient_step, learner, jax.random.split(key, s.grad_steps))
    return learner._replace(loss=jnp.mean(losses))


def step(state: State, config: Config) -> tuple[State, dict[str, jax.Array]]:
    """One vectorised env step (num_envs env steps) and the gradient steps that fall due."""
    s = _setup(offpolicy.static(config))
    key, explore_key, action_key, env_key, learn_key = jax.random.split(state.key, 5)
    env_steps = state.count.value * config.num_envs  # before this step

    eps = epsilon(config, env_steps)
    q = s.network.apply(state.learner.params, state.obs)
    greedy = jnp.argmax(q, axis=-1).astype(jnp.int32)
    explore = jax.random.uniform(explore_key, (config.num_envs,)) < eps
    random_action = jax.random.randint(action_key, (config.num_envs,), 0, s.num_actions)
    action = jnp.where(explore, random_action, greedy)

    out = envs.step(s.env, s.env_params, env_key, state.env_state, action)
    state = offpolicy.record(
        state, action, out, key, kind=config.replay, batch_size=config.batch_size
    )
    # Every seed shares `count`, so under the harness's vmap this stays a branch: no
    # gradient work on steps without an update.
    env_steps_after = env_steps + config.num_envs
    due = (env_steps_after > config.learning_starts) & (env_steps_after % s.period == 0)
    learn = functools.partial(_learn, key=learn_key, config=config, s=s)
    state = offpolicy.learn_if(due, learn, state)
    learner = state.learner
    return state, {
        "loss": learner.loss,
        "epsilon": eps,
        "lag": stabilizers.lag(learner.params, learner.target_params),
        **envs.episodes_metrics(state.episodes),
    }


def evaluate(state: State, config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """Mean return of `eval_episodes` greedy episodes (`return`) and their spread."""
    s = _setup(offpolicy.static(config))

    def policy(obs):
        return jnp.argmax(s.network.apply(state.learner.params, obs), axis=-1).astype(jnp.int32)

    return envs.evaluate(s.env, s.env_params, policy, key, config.eval_episodes, s.max_steps)


def units(config: Config) -> tuple[str, int]:
    return "env_steps", config.num_envs


RUN_LENGTH_FIELDS = ("total_steps",)
"""Config fields that only set the run's length (epsilon's schedule is in env steps)."""


PRESETS = {
    "smoke": Config(
        num_envs=4,
        train_every=4,
        total_steps=2_000,
        buffer_size=512,
        batch_size=32,
        hidden=(16,),
        learning_starts=200,
        target_every=40,
        epsilon_steps=1_000,
        eval_episodes=2,
    ),
    "minatar": Config(
        env="Breakout-MinAtar",
        num_envs=1,
        total_steps=5_000_000,
        buffer_size=100_000,
        batch_size=32,
        hidden=(128,),
        network="conv",
        target="periodic",
        target_every=1_000,
        loss="huber",
        learning_starts=5_000,
        train_every=1,
        epsilon_steps=100_000,
        epsilon_delay=5_000,
        optimizer="rmsprop",
        learning_rate=2.5e-4,
        gamma=0.99,
        epsilon_start=1.0,
        epsilon_end=0.1,
        huber_delta=1.0,
        rmsprop_decay=0.95,
        rmsprop_eps=0.01,
        rmsprop_momentum=0.95,
    ),
}
"""Named configs.

- "smoke": a run of a few seconds on a CPU, to check an install.
- "minatar": the DQN of Young & Tian (2019), as their repository's `examples/dqn.py`
  (github.com/kenjyoung/MinAtar) sets it: BATCH_SIZE = 32, REPLAY_BUFFER_SIZE = 100000,
  TARGET_NETWORK_UPDATE_FREQ = 1000 (a hard copy every 1000 updates; one update per
  frame, TRAINING_FREQ = 1), REPLAY_START_SIZE = 5000 frames of uniformly random actions,
  then epsilon from EPSILON = 1.0 down to END_EPSILON = 0.1 over FIRST_N_FRAMES = 100000,
  GAMMA = 0.99, NUM_FRAMES = 5000000, `f.smooth_l1_loss` (the Huber loss, delta 1), and
  `optim.RMSprop(lr=STEP_SIZE = 0.00025, alpha=SQUARED_GRAD_MOMENTUM = 0.95,
  centered=True, eps=MIN_SQUARED_GRAD = 0.01, momentum=GRAD_MOMENTUM = 0.95)`. PyTorch's
  RMSprop adds eps to the square root of the centered second moment; optax.rmsprop does
  the same with `eps_in_sqrt=False` (its momentum is PyTorch's: a trace of the scaled
  gradients), so the optimizer is the same. The network is theirs: a 3 x 3 convolution
  of 16 filters (stride 1, no padding), ReLU, a dense layer of 128 ReLU units and the
  output layer. Where gymnax's MinAtar differs from theirs (no sticky actions; episodes
  cut at `max_steps_in_episode`), this follows gymnax.
"""
