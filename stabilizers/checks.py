"""Argument checks: fail when a transform or a config is built, naming the argument.

Public so that algorithms and harnesses built on the library validate their own arguments
the way the transforms do: a `ValueError` that names the argument and the value it got.

    >>> from stabilizers import checks
    >>> checks.positive_int("every", 500)
    500
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import numpy as np


def _is_traced(value: Any) -> bool:
    """True for a value inside `jit` / `vmap` / `grad`: its contents are unknown now."""
    return isinstance(value, jax.core.Tracer)


def _is_array(value: Any) -> bool:
    return isinstance(value, (np.ndarray, np.generic, jax.Array))


def unit_interval(name: str, value: Any, *, allow_schedule: bool = False) -> Any:
    """Checks that `value` is a number in [0, 1], a scalar array of them, or a schedule.

    Traced values are accepted as they are (their contents cannot be read); concrete
    arrays are checked element-wise.
    """
    if allow_schedule and callable(value) and not _is_array(value):
        return value
    kinds = "a float in [0, 1], a scalar array" + (
        " or a schedule count -> value" if allow_schedule else ""
    )
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {kinds}; got the bool {value!r}")
    if isinstance(value, numbers.Real):
        if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
            raise ValueError(f"{name} must lie in [0, 1]; got {name}={value!r}")
        return value
    if _is_array(value):
        if np.ndim(value) != 0:
            raise ValueError(
                f"{name} must be a scalar (vmap over it for a sweep); got an array of shape "
                f"{np.shape(value)}"
            )
        if not np.issubdtype(np.dtype(value.dtype), np.floating) and not np.issubdtype(
            np.dtype(value.dtype), np.integer
        ):
            raise ValueError(f"{name} must be a real number; got dtype {value.dtype}")
        if not _is_traced(value):
            v = float(np.asarray(value))
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1]; got {name}={v!r}")
        return value
    raise ValueError(f"{name} must be {kinds}; got {value!r} of type {type(value).__name__}")


def positive_int(name: str, value: Any) -> Any:
    """Checks that `value` is an integer >= 1 (a Python int or an integer scalar array)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= 1; got the bool {value!r}")
    if isinstance(value, (int, np.integer)):
        if int(value) < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {name}={int(value)!r}")
        return int(value)
    if (
        _is_array(value)
        and np.ndim(value) == 0
        and np.issubdtype(np.dtype(value.dtype), np.integer)
    ):
        if not _is_traced(value) and int(np.asarray(value)) < 1:
            raise ValueError(
                f"{name} must be an integer >= 1; got {name}={int(np.asarray(value))!r}"
            )
        return value
    raise ValueError(
        f"{name} must be an integer >= 1; got {value!r} of type {type(value).__name__}"
    )
