"""The speed anchor: a DQN laid out the way PureJaxRL's `dqn.py` is, for side-by-side timing.

PureJaxRL (Lu et al., Discovered policy optimisation, NeurIPS 2022; github.com/luchris429/
purejaxrl, `purejaxrl/dqn.py`) trains a whole DQN run as one function, `jit(vmap(train))`
over seeds. This module reimplements that layout with the same config as `agents.dqn`'s
default (CleanRL's CartPole config) so the two can be timed on the same machine:

- the step counter is a scan carry that no seed's key touches, so `vmap` leaves it
  unbatched and both `lax.cond`s (learn or not, copy the target or not) stay
  conditionals, as in PureJaxRL (its lowered program has the same two `case` ops);
- the replay is flashbax's flat buffer (`make_flat_buffer`), which stores observations
  only and samples `(s_t, s_{t+1})` pairs from the same environment's row;
- `done = terminated or truncated` (the pre-1.0 gymnax API PureJaxRL was written for):
  time limits are treated as terminal.

It is not the project's DQN (that is `agents.dqn`, through the harness); it exists to be
measured beside it: `python -m benchmarks.rl_throughput`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flashbax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from agents import dqn, envs


class _QNetwork(nn.Module):
    num_actions: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(120)(x))
        x = nn.relu(nn.Dense(84)(x))
        return nn.Dense(self.num_actions)(x)


class _Timestep(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    done: jax.Array


class _Carry(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    buffer_state: Any
    env_state: Any
    obs: jax.Array
    timesteps: jax.Array
    key: jax.Array


DEFAULT = dqn.Config()


def make_train(config: dqn.Config = DEFAULT, total_steps: int | None = None):
    """`train(key) -> (final params, mean loss)` for one seed; vmap and jit it."""
    c = config
    total_steps = c.total_steps if total_steps is None else total_steps
    env, env_params = envs.make(c.env)
    num_actions = envs.num_actions(env, env_params, c.env, "dqn")
    obs_size = envs.observation_size(env, env_params, c.env)
    network = _QNetwork(num_actions)
    tx = optax.adam(c.learning_rate)
    buffer = flashbax.make_flat_buffer(
        max_length=c.buffer_size,
        min_length=c.batch_size,
        sample_batch_size=c.batch_size,
        add_sequences=False,
        add_batch_size=c.num_envs,
    )

    def train(key):
        key, reset_key, params_key = jax.random.split(key, 3)
        obs, env_state = envs.reset(env, env_params, reset_key, c.num_envs)
        with jax.numpy_rank_promotion("allow"):
            buffer_state = buffer.init(
                _Timestep(obs[0], jnp.int32(0), jnp.float32(0.0), jnp.bool_(False))
            )
        params = network.init(params_key, jnp.zeros((obs_size,)))

        def iteration(carry: _Carry, _):
            key, explore_key, action_key, env_key, sample_key = jax.random.split(carry.key, 5)
            eps = jnp.clip(
                c.epsilon_start
                + (c.epsilon_end - c.epsilon_start) * carry.timesteps / c.epsilon_steps,
                c.epsilon_end,
            )
            greedy = jnp.argmax(network.apply(carry.params, carry.obs), axis=-1)
            action = jnp.where(
                jax.random.uniform(explore_key, (c.num_envs,)) < eps,
                jax.random.randint(action_key, (c.num_envs,), 0, num_actions),
                greedy,
            ).astype(jnp.int32)
            out = envs.step(env, env_params, env_key, carry.env_state, action)
            timesteps = carry.timesteps + c.num_envs
            done = out.terminated | out.truncated
            with jax.numpy_rank_promotion("allow"):
                buffer_state = buffer.add(
                    carry.buffer_state, _Timestep(carry.obs, action, out.reward, done)
                )

            def learn(params, opt_state):
                with jax.numpy_rank_promotion("allow"):
                    batch = buffer.sample(buffer_state, sample_key).experience
                q_next = jnp.max(network.apply(carry.target_params, batch.second.obs), axis=-1)
                y = batch.first.reward + (1.0 - batch.first.done) * c.gamma * q_next

                def loss_fn(params):
                    q = network.apply(params, batch.first.obs)
                    q_a = jnp.take_along_axis(q, batch.first.action[:, None], axis=-1)[:, 0]
                    return jnp.mean(jnp.square(q_a - y))

                loss, grads = jax.value_and_grad(loss_fn)(params)
                updates, opt_state = tx.update(grads, opt_state, params)
                return optax.apply_updates(params, updates), opt_state, loss

            with jax.numpy_rank_promotion("allow"):
                can_sample = buffer.can_sample(buffer_state)
            is_learn = (
                can_sample & (timesteps > c.learning_starts) & (timesteps % c.train_every == 0)
            )
            params, opt_state, loss = jax.lax.cond(
                is_learn,
                learn,
                lambda p, o: (p, o, jnp.zeros(())),
                carry.params,
                carry.opt_state,
            )
            target_params = jax.lax.cond(
                timesteps % c.target_every == 0,
                lambda: params,
                lambda: carry.target_params,
            )
            new = _Carry(
                params, target_params, opt_state, buffer_state, out.env_state, out.obs,
                timesteps, key,
            )  # fmt: skip
            return new, loss

        carry = _Carry(
            params, params, tx.init(params), buffer_state, env_state, obs,
            jnp.zeros((), jnp.int32), key,
        )  # fmt: skip
        carry, losses = jax.lax.scan(iteration, carry, None, length=total_steps // c.num_envs)
        return carry.params, jnp.mean(losses)

    return train


def greedy_return(
    params, key: jax.Array, config: dqn.Config = DEFAULT, episodes: int = 10
) -> jax.Array:
    """Mean return of greedy episodes of the anchor's network (as `agents.dqn.evaluate`)."""
    env, env_params = envs.make(config.env)
    network = _QNetwork(envs.num_actions(env, env_params, config.env, "dqn"))

    def policy(obs):
        return jnp.argmax(network.apply(params, obs), axis=-1).astype(jnp.int32)

    steps = envs.max_episode_steps(env_params, config.env)
    return envs.evaluate(env, env_params, policy, key, episodes, steps)["return"]
