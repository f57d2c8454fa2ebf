"""Target trackers: the target network as an optax transformation.

A target network is trained by an optimizer too. Its "gradient" is the direction it
should move, `delta = online - target`, its params are the target itself, and the
transform returns the increment to add to the target, as every optax transform returns
the update to add to the params. With updates that are deltas, optax's combinators keep
their meaning: under `optax.masked(tx, mask)` the unmasked leaves receive the whole delta
and follow the online params exactly; `optax.multi_transform` with `optax.set_to_zero()`
freezes leaves; `optax.inject_hyperparams` makes a decay a traced, schedulable value.

Convention used throughout: `decay` is the weight kept on the old target,

    target <- decay * target + (1 - decay) * online,

so DDPG / TD3 / SAC's `tau` is `1 - decay`, MoCo's `m` and BYOL's `tau` are `decay`, and
optax's `incremental_update(online, target, step_size)` has `step_size = 1 - decay`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from stabilizers import checks
from stabilizers.parallel import SharedCount, shared_count


class EmaState(NamedTuple):
    """State of `ema`.

    Attributes:
      count: number of updates made so far (the argument of a decay schedule).
    """

    count: SharedCount


class PeriodicState(NamedTuple):
    """State of `periodic`.

    Attributes:
      count: number of updates made so far; a copy happens when it reaches a multiple of
        `every`.
    """

    count: SharedCount


def _compute_dtype(dtype) -> jnp.dtype:
    # Scale low-precision deltas in float32 at least, then cast back to the leaf dtype.
    return jnp.promote_types(dtype, jnp.float32)


def ema(decay: float | jax.Array | optax.Schedule) -> optax.GradientTransformation:
    r"""Exponential moving average (soft / Polyak) target update.

    Given `updates = online - target` and `params = target`, returns the increment

    .. math::
      \Delta = (1 - \mu_k)\,(\theta - \bar\theta), \qquad
      \bar\theta \leftarrow \bar\theta + \Delta = \mu_k \bar\theta + (1 - \mu_k)\,\theta,

    with :math:`\mu_k` the decay at the k-th update (k = 0, 1, ...). This is one step of
    SGD on :math:`\tfrac12 \lVert \bar\theta - \theta \rVert^2` with learning rate
    :math:`1 - \mu_k`, and the same average as
    `optax.incremental_update(online, target, step_size=1 - decay)`. The target receives
    no gradient: compute `delta` from the online params outside any `jax.grad`, or wrap the
    target side of a loss in `jax.lax.stop_gradient`.

    On deltas this is `optax.scale_by_schedule(lambda k: 1 - mu(k))`, plus the exact copy
    that `update_target` makes where the increment is the whole delta. It is not
    `optax.ema`, which averages the *updates* (a momentum on gradients); this one averages
    the *params* of a target toward the online ones.

    `decay = 0` copies the online params at every call (no target network); `decay = 1`
    freezes the target. DDPG, TD3 and SAC write `tau = 1 - decay` (0.005); MoCo's momentum
    `m = 0.999` and BYOL's `tau` (0.996 to 1, `schedules.cosine_momentum`) are `decay`;
    Consistency Training's `mu(k)` is `schedules.consistency_ema`.

    Leaves keep their dtype; the scaling is done in at least float32. With a decay close to
    1, a bfloat16 target cannot represent the small increments: keep targets in float32.

    Args:
      decay: weight kept on the old target, in [0, 1]. A Python float, a scalar array
        (traced values are fine, so a sweep can `vmap` over it), or a schedule
        `count -> decay` called with the number of earlier updates, starting at 0.

    Returns:
      An `optax.GradientTransformation` whose state is `EmaState`.

    Example:
      >>> import jax.numpy as jnp, stabilizers
      >>> tx = stabilizers.ema(decay=0.9)
      >>> online, target = {"w": jnp.ones(3)}, {"w": jnp.zeros(3)}
      >>> state = tx.init(target)
      >>> target, state = stabilizers.update_target(tx, online, target, state)
      >>> target["w"]  # 0.9 * 0 + 0.1 * 1
      Array([0.1, 0.1, 0.1], dtype=float32)

    References:
      Lillicrap et al., Continuous control with deep reinforcement learning, 2015
      (soft target updates). Polyak & Juditsky, Acceleration of stochastic approximation
      by averaging, 1992.
    """
    decay = checks.unit_interval("decay", decay, allow_schedule=True)

    def init_fn(params):
        del params
        return EmaState(count=shared_count())

    def update_fn(updates, state, params=None):
        del params
        d = decay(state.count.value) if callable(decay) else decay
        # A Python decay gives its step size in double precision (1 - 0.9 is 0.1, not
        # float32's 0.100000024); an array decay is subtracted in the compute dtype.
        step_size = 1.0 - float(d) if isinstance(d, (int, float)) else None

        def scale(u):
            cdt = _compute_dtype(u.dtype)
            step = step_size if step_size is not None else 1 - jnp.asarray(d, cdt)
            return (jnp.asarray(step, cdt) * u.astype(cdt)).astype(u.dtype)

        increments = jax.tree.map(scale, updates)
        return increments, EmaState(count=SharedCount(optax.safe_increment(state.count.value)))

    return optax.GradientTransformation(init_fn, update_fn)


def periodic(
    every: int | jax.Array, decay: float | jax.Array = 0.0
) -> optax.GradientTransformation:
    r"""Hard target copy every `every` updates (DQN's target network), or an EMA step.

    On the `every`-th, `2 * every`-th, ... call the target takes one EMA step of decay
    `decay`; on every other call it stays:

    .. math::
      \bar\theta_{k+1} = \begin{cases} \mu\,\bar\theta_k + (1 - \mu)\,\theta_k
      & (k + 1) \bmod N = 0 \\ \bar\theta_k & \text{otherwise.} \end{cases}

    With the default `decay = 0` this is DQN's hard copy; with `every = 1` it is
    `ema(decay)`. So one tracker spans both mechanisms, and since `every` and `decay` may
    be traced, a sweep over copy periods and decays together is one vmapped program.
    `update_target` makes a copy exact in floating point.

    The mean age of the target, in updates of the online params, is
    :math:`(N - 1) / 2 + N \mu / (1 - \mu)` (`mean_age`): (N - 1) / 2 for a hard copy,
    :math:`\mu / (1 - \mu)` for an EMA.

    The step is a `where` on a scalar predicate, fused with the addition into one pass
    over the params: the same cost as `ema` whether or not the counter is batched.

    Args:
      every: the period N, an integer >= 1, or an integer scalar array (traced values are
        fine, so a sweep can `vmap` over it).
      decay: the weight kept on the old target at a due call, in [0, 1]: a float or a
        scalar array (traced values are fine). 0: a hard copy.

    Returns:
      An `optax.GradientTransformation` whose state is `PeriodicState`.

    Example:
      >>> import jax.numpy as jnp, stabilizers
      >>> tx = stabilizers.periodic(every=2)
      >>> online, target = jnp.ones(2), jnp.zeros(2)
      >>> state = tx.init(target)
      >>> target, state = stabilizers.update_target(tx, online, target, state)
      >>> target  # first call: not due
      Array([0., 0.], dtype=float32)
      >>> target, state = stabilizers.update_target(tx, online, target, state)
      >>> target  # second call: copied
      Array([1., 1.], dtype=float32)

    References:
      Mnih et al., Human-level control through deep reinforcement learning, Nature 2015.
    """
    every = checks.positive_int("every", every)
    decay = checks.unit_interval("decay", decay)
    copy = isinstance(decay, (int, float)) and float(decay) == 0.0

    def init_fn(params):
        del params
        return PeriodicState(count=shared_count())

    def step(u):
        if copy:
            return u
        cdt = _compute_dtype(u.dtype)
        size = (
            1.0 - float(decay) if isinstance(decay, (int, float)) else 1 - jnp.asarray(decay, cdt)
        )
        return (jnp.asarray(size, cdt) * u.astype(cdt)).astype(u.dtype)

    def update_fn(updates, state, params=None):
        del params
        count = optax.safe_increment(state.count.value)
        due = count % every == 0
        # a scalar `where`, not a `lax.cond`: a cond would copy the whole tree through
        # its branch instead of fusing with the addition
        increments = jax.tree.map(lambda u: jnp.where(due, step(u), jnp.zeros_like(u)), updates)
        return increments, PeriodicState(count=SharedCount(count))

    return optax.GradientTransformation(init_fn, update_fn)


def mean_age(every: int | jax.Array = 1, decay: float | jax.Array = 0.0) -> jax.Array:
    r"""Mean age, in updates of the online params, of the target of `periodic(every, decay)`.

    .. math::
      a(N, \mu) = \frac{N - 1}{2} + \frac{N \mu}{1 - \mu},

    the age of the copies averaged over the N calls of a period ((N - 1) / 2 for a hard
    copy) plus N times the mean age of an EMA's weights (:math:`\mu / (1 - \mu)`, the mean
    of the geometric weights :math:`(1 - \mu)\mu^j` over j). `ema(decay)` is N = 1; no
    target (decay 0 every call) is age 0; a frozen target (decay 1) is age `inf`.

    Example:
      >>> import stabilizers
      >>> float(stabilizers.mean_age(every=7)), float(stabilizers.mean_age(decay=0.75))
      (3.0, 3.0)
    """
    n = jnp.asarray(every, jnp.float32)
    mu = jnp.asarray(decay, jnp.float32)
    ema_age = jnp.where(mu < 1, mu / jnp.where(mu < 1, 1 - mu, 1.0), jnp.inf)
    return (n - 1) / 2 + n * ema_age


def ema_decay_for_age(age: float | jax.Array) -> jax.Array:
    """The `ema` decay whose target has mean age `age` >= 0: `age / (1 + age)`.

    A hard copy every N updates has the mean age (N - 1) / 2 of the decay (N - 1) / (N + 1).
    """
    age = jnp.asarray(age, jnp.float32)
    return age / (1 + age)


def update_target(
    tx: optax.GradientTransformation,
    online: Any,
    target: Any,
    state: optax.OptState,
    **extra_args: Any,
) -> tuple[Any, optax.OptState]:
    """Moves `target` toward `online` with the target tracker `tx`, in one call.

    Equivalent to::

        delta = jax.tree.map(lambda o, t: o - t, online, target)
        increments, state = tx.update(delta, state, target)
        target = optax.apply_updates(target, increments)

    except that a leaf whose increment is the whole delta becomes `online` exactly (a hard
    copy, a masked-out leaf, decay 0), where `target + (online - target)` could differ by
    a rounding, and a leaf whose increment is zero stays `target` exactly.
    Nothing here is differentiated: the result is `stop_gradient`-ed.

    Args:
      tx: a target tracker (`ema`, `periodic`, or any optax transformation of deltas).
      online: the online params.
      target: the target params, with the structure and dtypes of `online`.
      state: the state of `tx`.
      **extra_args: passed to `tx.update` when it accepts extra arguments.

    Returns:
      `(new_target, new_state)`.
    """
    online = jax.lax.stop_gradient(online)
    target = jax.lax.stop_gradient(target)
    delta = jax.tree.map(lambda o, t: o - t, online, target)
    if extra_args:
        increments, state = optax.with_extra_args_support(tx).update(
            delta, state, target, **extra_args
        )
    else:
        increments, state = tx.update(delta, state, target)

    def apply(o, t, d, i):
        # A zero increment leaves the target bit for bit (a frozen leaf, an off-step of
        # `periodic`, decay 1), also where `o - t` was flushed to zero (subnormal
        # differences under flush-to-zero) and `i == d` would wrongly snap to `o`.
        moved = (t + i).astype(t.dtype)
        return jnp.where(i == 0, t, jnp.where(i == d, o.astype(t.dtype), moved))

    new_target = jax.tree.map(apply, online, target, delta, increments)
    return new_target, state
