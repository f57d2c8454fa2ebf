"""Config handling that every agent shares: the cache key of a setup and the common checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from stabilizers import checks


def static(config: Any) -> Any:
    """`config` with every pytree leaf (float hyperparameter, possibly traced) set to 0.0.

    What remains are the static fields, which determine an agent's setup (environment,
    networks, sizes): the result is hashable and serves as its `lru_cache` key. The leaves
    are read from the dataclass (`pytree_node`), so a new hyperparameter cannot be
    forgotten.
    """
    leaves = [f.name for f in dataclasses.fields(config) if f.metadata.get("pytree_node", True)]
    return config.replace(hidden=tuple(config.hidden), **{name: 0.0 for name in leaves})


def check_common(c: Any, positive: Sequence[str], nonnegative: Sequence[str]) -> None:
    """The checks every off-policy agent's config needs, each a ValueError naming the field.

    `positive` fields must be integers >= 1, `nonnegative` ones integers >= 0; `hidden`
    must be positive layer widths and the buffer must hold one step of `num_envs` envs.
    """
    for name in positive:
        checks.positive_int(name, getattr(c, name))
    for name in nonnegative:
        value = getattr(c, name)
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    if not all(isinstance(h, int) and h >= 1 for h in c.hidden):
        raise ValueError(f"hidden must be positive layer widths; got {c.hidden!r}")
    if c.num_envs > c.buffer_size:
        raise ValueError(f"buffer_size ({c.buffer_size}) must hold one step of {c.num_envs} envs")
