"""Uniform experience replay: a ring buffer whose write position every seed shares.

Every seed of a vmapped run adds the same number of transitions per step, so the write
position and the fill level are the same for all of them: they live in
`stabilizers.SharedCount`s. Under the harness's `vmap` (with `stabilizers.seed_axes`) the
insertion is then one `dynamic_update_slice` at an unbatched offset, done in place,
instead of a scatter with one offset per seed. Sampling draws indices uniformly (with
replacement) among the stored items, one draw per seed.

`kind="flashbax"` keeps the same interface over flashbax's item buffer
(`flashbax.make_item_buffer(add_batches=True)`), whose write index is part of the
batched state; `benchmarks/rl_throughput.py` measures both.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from stabilizers import SharedCount, shared_count

KINDS = ("ring", "flashbax")


class Transition(NamedTuple):
    """One stored transition (s_{t-1}, a_{t-1}, r_t, terminated_t, s_t): the item every
    agent replays (rlax's names; `terminated_t`, not truncation, ends bootstrapping)."""

    obs_tm1: jax.Array
    a_tm1: jax.Array
    r_t: jax.Array
    terminated_t: jax.Array
    obs_t: jax.Array


class Replay(NamedTuple):
    """A replay buffer's state.

    Attributes:
      data: the stored items: a pytree whose leaves have a leading axis of `capacity`
        ("ring"), or flashbax's `TrajectoryBufferState` ("flashbax").
      position: where the next item goes (shared by every seed).
      size: number of items stored, at most `capacity` (shared by every seed).
    """

    data: Any
    position: SharedCount
    size: SharedCount


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"replay must be one of {KINDS}; got {kind!r}")
    return kind


def _flashbax(capacity: int, batch_size: int):
    import flashbax

    return flashbax.make_item_buffer(
        max_length=capacity, min_length=1, sample_batch_size=batch_size, add_batches=True
    )


def _implicit_ranks():
    # flashbax broadcasts arrays of different ranks internally; allow it there even when
    # the caller runs with jax_numpy_rank_promotion="raise".
    return jax.numpy_rank_promotion("allow")


def init(example: Any, capacity: int, *, kind: str = "ring", batch_size: int = 1) -> Replay:
    """An empty buffer for items shaped like `example` (one item, no leading axis)."""
    check_kind(kind)
    if kind == "ring":
        data = jax.tree.map(
            lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.result_type(x)), example
        )
    else:
        with _implicit_ranks():
            data = _flashbax(capacity, batch_size).init(example)
    return Replay(data=data, position=shared_count(), size=shared_count())


def add(buffer: Replay, items: Any, *, kind: str = "ring", batch_size: int = 1) -> Replay:
    """Appends `items` (leaves with a leading axis of n <= capacity), overwriting the oldest."""
    n = jax.tree.leaves(items)[0].shape[0]
    capacity = _capacity(buffer, kind)
    if n > capacity:
        raise ValueError(f"cannot add {n} items at once to a buffer of capacity {capacity}")
    pos = buffer.position.value
    if kind == "flashbax":
        with _implicit_ranks():
            data = _flashbax(capacity, batch_size).add(buffer.data, items)
    elif capacity % n == 0:  # the n slots never wrap around: one contiguous write
        data = jax.tree.map(
            lambda d, x: jax.lax.dynamic_update_slice_in_dim(d, x.astype(d.dtype), pos, axis=0),
            buffer.data,
            items,
        )
    else:
        slots = (pos + jnp.arange(n)) % capacity
        data = jax.tree.map(lambda d, x: d.at[slots].set(x.astype(d.dtype)), buffer.data, items)
    return Replay(
        data=data,
        position=SharedCount((pos + n) % capacity),
        size=SharedCount(jnp.minimum(buffer.size.value + n, capacity)),
    )


def sample(buffer: Replay, key: jax.Array, batch_size: int, *, kind: str = "ring") -> Any:
    """`batch_size` items drawn uniformly with replacement from the stored ones.

    The buffer must hold at least one item (the agents gate learning on that).
    """
    if kind == "flashbax":
        with _implicit_ranks():
            fbx = _flashbax(_capacity(buffer, kind), batch_size)
            return fbx.sample(buffer.data, key).experience
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size.value, 1))
    return jax.tree.map(lambda d: jnp.take(d, idx, axis=0, mode="clip"), buffer.data)


def _capacity(buffer: Replay, kind: str) -> int:
    leaf = jax.tree.leaves(buffer.data.experience if kind == "flashbax" else buffer.data)[0]
    return leaf.shape[1] if kind == "flashbax" else leaf.shape[0]
