"""Counters that every vmapped seed shares, so shared periods stay real branches.

Under `jax.vmap`, a `lax.cond` whose predicate is batched becomes a `select` that runs
both branches for every seed. A copy period or an update delay is the same for every
seed of a sweep, so its counter need not be batched at all. `SharedCount` marks such a
counter in a state pytree, and `seed_axes` turns a state into the `in_axes` / `out_axes`
prefix that maps every leaf over the seed axis except the shared counters:

```python
axes = stabilizers.seed_axes(jax.eval_shape(init, key, config))
states = jax.vmap(init, in_axes=(0, None), out_axes=axes)(keys, config)
states, metrics = jax.vmap(step, in_axes=(axes, None), out_axes=(axes, 0))(states, config)
```

A `stabilizers.delayed(optax.adam(...), every=2)` inside `step` then runs Adam only on
due steps, for all seeds at once, instead of running it every step and discarding half.
With a plain `jax.vmap` (no axes) everything still computes the same numbers, only slower.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class SharedCount(NamedTuple):
    """An int32 step counter that every vmapped copy of a state shares.

    Attributes:
      value: int32 scalar, the number of updates made so far.
    """

    value: jax.Array


def shared_count(value: int = 0) -> SharedCount:
    """A new `SharedCount` holding `value` (int32, not derived from any key)."""
    return SharedCount(jnp.asarray(value, dtype=jnp.int32))


def is_shared(x: Any) -> bool:
    """True for a `SharedCount` node (use as `is_leaf` in tree maps)."""
    return isinstance(x, SharedCount)


def seed_axes(tree: Any, axis: int = 0) -> Any:
    """The vmap axis spec of a state pytree: `axis` everywhere but `None` on shared counters.

    Args:
      tree: a state pytree (concrete arrays or `jax.ShapeDtypeStruct`s, e.g. from
        `jax.eval_shape`).
      axis: the seed axis of batched leaves.

    Returns:
      A pytree prefix of `tree` for `in_axes` / `out_axes` of `jax.vmap`.
    """
    return jax.tree.map(lambda x: None if is_shared(x) else axis, tree, is_leaf=is_shared)
