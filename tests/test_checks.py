"""stabilizers.checks: the argument checks, with errors that name the argument and value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stabilizers import checks


@pytest.mark.parametrize("value", [1, 7, np.int64(3), jnp.int32(2)])
def test_positive_int_accepts_integers_from_one(value):
    assert int(checks.positive_int("n", value)) == int(value)


@pytest.mark.parametrize(
    "value,match",
    [
        (0, r"n must be an integer >= 1; got n=0"),
        (-2, r"n=-2"),
        (2.0, r"2.0.*float"),
        (True, r"bool True"),
        ("3", r"'3'"),
        (jnp.int32(0), r"n=0"),
        (jnp.ones(2, int), r"n"),
    ],
)
def test_positive_int_rejects_the_rest(value, match):
    with pytest.raises(ValueError, match=match):
        checks.positive_int("n", value)


@pytest.mark.parametrize("value", [0, 0.5, 1, np.float32(0.25), jnp.asarray(1.0)])
def test_unit_interval_accepts_numbers_in_zero_one(value):
    assert checks.unit_interval("decay", value) is value


@pytest.mark.parametrize(
    "value,match",
    [
        (1.5, r"decay must lie in \[0, 1\]; got decay=1.5"),
        (float("nan"), r"nan"),
        (jnp.asarray(-0.5), r"-0.5"),
        (jnp.ones(2), r"scalar"),
        (False, r"bool"),
        (lambda k: 0.9, r"of type function"),
        (jnp.asarray(1 + 0j), r"real"),
    ],
)
def test_unit_interval_rejects_the_rest(value, match):
    with pytest.raises(ValueError, match=match):
        checks.unit_interval("decay", value)


def test_unit_interval_takes_schedules_when_allowed_and_traced_values_unread():
    schedule = lambda k: 0.9  # noqa: E731
    assert checks.unit_interval("decay", schedule, allow_schedule=True) is schedule
    out = jax.jit(lambda d: checks.unit_interval("decay", d) * 2)(jnp.asarray(0.25))
    assert float(out) == 0.5
