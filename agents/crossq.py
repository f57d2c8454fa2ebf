"""CrossQ's critic for SAC: batch renormalization, and one forward pass over (s, a) and (s', a').

CrossQ (Bhatt et al. 2024) removes SAC's target network. Its critic normalizes its input and
each hidden layer with batch renormalization, and evaluates the current state-actions
`(s_{t-1}, a_{t-1})` and the next ones `(s_t, a')`, `a' ~ pi(.|s_t)`, as one batch, so that
both halves share one set of batch statistics; the second half, behind a stop-gradient,
gives the bootstrap values. The actor is trained against the critic in inference mode (the
running statistics). Adam's first-moment decay is 0.5, the paper's.

Batch renormalization (Ioffe 2017) in training mode:

    x_hat = (x - mu_B) / sigma_B * r + d,  r = clip(sigma_B / sigma, 1 / r_max, r_max),
    d = clip((mu_B - mu) / sigma, -d_max, d_max),

with `r`, `d` constants for the gradient, `mu`, `sigma` the running statistics (moving
averages of momentum 0.99), and `r_max`, `d_max` relaxed linearly from 1 and 0 (plain batch
normalization) over the first `warmup` training passes; in inference mode
`x_hat = (x - mu) / sigma`.

`agents.sac` uses this module when `critic="crossq"`; the critic's variables are
`{"params", "batch_stats"}` with a leading ensemble axis.

References:
  Bhatt et al., CrossQ: Batch normalization in deep reinforcement learning for greater
  sample efficiency and simplicity, ICLR 2024.
  Ioffe, Batch renormalization, NeurIPS 2017.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

ADAM_B1 = 0.5
"""Adam's first-moment decay in CrossQ (the paper's hyperparameters)."""


class BatchRenorm(nn.Module):
    """Batch renormalization over every axis but the last (see the module docstring)."""

    use_running_average: bool = False
    momentum: float = 0.99
    epsilon: float = 1e-3
    r_max: float = 3.0
    d_max: float = 5.0
    warmup: int = 1000

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = (x.shape[-1],)
        mean = self.variable("batch_stats", "mean", jnp.zeros, features)
        var = self.variable("batch_stats", "var", jnp.ones, features)
        steps = self.variable("batch_stats", "steps", jnp.zeros, (), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, features)
        bias = self.param("bias", nn.initializers.zeros, features)
        lead = (1,) * (x.ndim - 1)  # explicit broadcasting over the batch axes

        def b(v):
            return jnp.reshape(v, lead + features)

        sigma = jnp.sqrt(var.value + self.epsilon)
        if self.use_running_average:
            return (x - b(mean.value)) / b(sigma) * b(scale) + b(bias)
        axes = tuple(range(x.ndim - 1))
        batch_mean, batch_var = jnp.mean(x, axes), jnp.var(x, axes)
        batch_sigma = jnp.sqrt(batch_var + self.epsilon)
        relax = jnp.minimum(steps.value / self.warmup, 1.0)
        r_max = 1.0 + (self.r_max - 1.0) * relax
        d_max = self.d_max * relax
        r = jax.lax.stop_gradient(jnp.clip(batch_sigma / sigma, 1.0 / r_max, r_max))
        d = jax.lax.stop_gradient(jnp.clip((batch_mean - mean.value) / sigma, -d_max, d_max))
        if not self.is_initializing():
            m = self.momentum
            mean.value = m * mean.value + (1 - m) * jax.lax.stop_gradient(batch_mean)
            var.value = m * var.value + (1 - m) * jax.lax.stop_gradient(batch_var)
            steps.value = steps.value + 1.0
        x_hat = (x - b(batch_mean)) / b(batch_sigma) * b(r) + b(d)
        return x_hat * b(scale) + b(bias)


class Critic(nn.Module):
    """Q(s, a): batch renormalization of the input, then Dense -> ReLU -> BatchRenorm per
    hidden layer, then one linear output (`train`: batch statistics, else running ones)."""

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, obs: jax.Array, action: jax.Array, train: bool = False) -> jax.Array:
        norm = lambda: BatchRenorm(use_running_average=not train)  # noqa: E731
        x = norm()(jnp.concatenate([obs, action], axis=-1))
        for width in self.hidden:
            x = norm()(nn.relu(nn.Dense(width)(x)))
        return nn.Dense(1)(x)[..., 0]


def optimizer(learning_rate) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=ADAM_B1)


def joint_q(critic: Critic, variables, obs_tm1, a_tm1, obs_t, a_t):
    """Every ensemble member on `[(s_{t-1}, a_{t-1}); (s_t, a_t)]` as ONE batch in training
    mode: `(q_tm1 [C, B], q_t [C, B], new batch_stats)`."""
    obs = jnp.concatenate([obs_tm1, obs_t], axis=0)
    action = jnp.concatenate([a_tm1, a_t], axis=0)

    def one(v):
        q, updates = critic.apply(v, obs, action, train=True, mutable=["batch_stats"])
        return q, updates["batch_stats"]

    q, stats = jax.vmap(one)(variables)
    b = obs_tm1.shape[0]
    return q[:, :b], q[:, b:], stats


def q_values(critic: Critic, variables, obs, action) -> jax.Array:
    """`[C, B]`: every member in inference mode (running statistics), e.g. for the actor."""
    return jax.vmap(lambda v: critic.apply(v, obs, action))(variables)


def critic_step(
    variables,
    opt_state: optax.OptState,
    batch,
    a_t: jax.Array,
    targets: Callable[[jax.Array], jax.Array],
    target_variables: Any | None,
    learning_rate,
    critic: Critic,
):
    """One Adam step of the ensemble on `sum_i 0.5 mean_batch (Q_i(s_{t-1}, a_{t-1}) - y)^2`.

    `y = targets(q_t)` behind a stop-gradient, with `q_t [C, B]` the second half of the
    joint pass (no target network: `target_variables is None`) or the target variables'
    own joint pass over the same batch. Returns `(variables, opt_state, loss, mean Q)`.
    """
    if target_variables is not None:
        _, q_bar, _ = joint_q(
            critic, target_variables, batch.obs_tm1, batch.a_tm1, batch.obs_t, a_t
        )

    def loss_fn(params):
        v = {"params": params, "batch_stats": variables["batch_stats"]}
        q_tm1, q_t, stats = joint_q(critic, v, batch.obs_tm1, batch.a_tm1, batch.obs_t, a_t)
        y = jax.lax.stop_gradient(targets(q_t if target_variables is None else q_bar))
        loss = jnp.sum(0.5 * jnp.mean(jnp.square(q_tm1 - y[None, :]), axis=1))
        return loss, (jnp.mean(q_tm1), stats)

    (loss, (q, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
    updates, opt_state = optimizer(learning_rate).update(grads, opt_state, variables["params"])
    params = optax.apply_updates(variables["params"], updates)
    return {"params": params, "batch_stats": stats}, opt_state, loss, q
