"""Test configuration: strict rank promotion, quiet and bounded hypothesis runs."""

import os

# Tests check behaviour, not speed: LLVM's optimisation passes cost far more compile time
# than they save in these small runs (2.3 s -> 0.3 s for a vmapped `jax.random.normal`).
# Benchmarks run with XLA's defaults. Subprocesses started by tests inherit this.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# `(B,)` against `(B, 1)` broadcasting is the classic TD-target bug: make it an error.
jax.config.update("jax_numpy_rank_promotion", "raise")

settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("default")
