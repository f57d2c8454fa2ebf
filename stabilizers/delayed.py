"""Delayed updates: one partner moves only every `every`-th step (TD3's delayed policy)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from stabilizers import checks
from stabilizers.parallel import SharedCount, shared_count


class DelayedState(NamedTuple):
    """State of `delayed`.

    Attributes:
      count: number of calls so far; the inner transform runs when it reaches a multiple
        of `every`.
      inner_state: the wrapped transformation's state, advanced only on due calls.
    """

    count: SharedCount
    inner_state: Any


class DelayedTransformation(optax.GradientTransformationExtraArgs):
    """What `delayed` returns: optax's `init` / `update`, and `is_due`."""

    def __new__(cls, init, update, every: int = 1):
        self = super().__new__(cls, init, update)
        self.every = every
        return self

    def is_due(self, state: DelayedState) -> jax.Array:
        """Whether the next `update` with `state` runs the inner transformation.

        A bool scalar computed from the shared count: a caller can skip work that only a
        due step needs (TD3 computes the actor's gradient on due steps only) in a
        `lax.cond` that stays a real branch under `vmap` with `seed_axes`.
        """
        return (state.count.value + 1) % self.every == 0


def delayed(inner: optax.GradientTransformation, every: int) -> DelayedTransformation:
    r"""Runs `inner` on every `every`-th call only, and returns zeros in between.

    On calls `every`, `2 * every`, ... (counting from 1) it returns `inner`'s updates and
    advances `inner`'s state; on the other calls it returns zeros and leaves `inner`'s
    state untouched. So `delayed(optax.adam(lr), 2)` over 2n calls applies exactly the n
    Adam updates that `optax.adam(lr)` would make over the n due calls: Adam's moments and
    bias correction see only the due steps. This is TD3's delayed policy update (policy
    and targets every d = 2 critic updates). Wrapping a target tracker delays the target:
    `delayed(ema(0.995), 2)` moves the target on due steps only.

    Unlike `optax.MultiSteps`, the gradients of skipped calls are dropped, not
    accumulated: the caller computes a fresh gradient on due steps.

    The inner update runs inside a `lax.cond` on a `SharedCount`. Under `jax.vmap` with
    `stabilizers.seed_axes` the predicate stays unbatched and skipped steps cost nothing;
    under a plain `vmap` both branches run (same numbers, more work).

    Args:
      inner: any optax transformation (an optimizer, a target tracker, a chain).
      every: the delay d, an integer >= 1. `delayed(inner, 1)` is `inner`.

    Returns:
      A `DelayedTransformation` (an `optax.GradientTransformationExtraArgs`) whose state
      is `DelayedState`; extra keyword arguments reach `inner` when it accepts them, and
      `tx.is_due(state)` tells whether the next call runs `inner`.

    Example:
      >>> import jax.numpy as jnp, optax, stabilizers
      >>> tx = stabilizers.delayed(optax.sgd(1.0), every=2)
      >>> params = jnp.zeros(1)
      >>> state = tx.init(params)
      >>> u, state = tx.update(jnp.ones(1), state, params)
      >>> u  # first call: skipped
      Array([0.], dtype=float32)
      >>> bool(tx.is_due(state))  # the next call runs sgd
      True
      >>> u, state = tx.update(jnp.ones(1), state, params)
      >>> u  # second call: sgd's update
      Array([-1.], dtype=float32)

    References:
      Fujimoto, van Hoof & Meger, Addressing function approximation error in actor-critic
      methods (TD3), ICML 2018, section 5.2.
    """
    if not isinstance(inner, optax.GradientTransformation):
        raise ValueError(
            f"inner must be an optax.GradientTransformation; got {inner!r} of type "
            f"{type(inner).__name__}"
        )
    every = checks.positive_int("every", every)
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return DelayedState(count=shared_count(), inner_state=inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        count = optax.safe_increment(state.count.value)

        def run(operands):
            u, s, p = operands
            return inner.update(u, s, p, **extra_args)

        if isinstance(every, int) and every == 1:
            new_updates, inner_state = run((updates, state.inner_state, params))
        else:
            out_shapes = jax.eval_shape(run, (updates, state.inner_state, params))

            def skip(operands):
                _, s, _ = operands
                zeros = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), out_shapes[0])
                return zeros, s

            new_updates, inner_state = jax.lax.cond(
                count % every == 0, run, skip, (updates, state.inner_state, params)
            )
        return new_updates, DelayedState(count=SharedCount(count), inner_state=inner_state)

    return DelayedTransformation(init_fn, update_fn, every)
