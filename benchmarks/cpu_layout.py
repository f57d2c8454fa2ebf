"""The CPU layout of a run: how many JAX devices the cores are split into.

On a CPU, JAX's default is one device whose XLA thread pool spans every core. With several
devices the harness splits its grid of seeds x sweep points over them, which on the
project's 2-core reference machine ran DQN and TD3 (8 seeds) faster than JAX's default layout
(`python -m benchmarks.rl_throughput` measures both; its numbers are in docs/rl.md,
"Throughput"):

- "split": one JAX CPU device per core with one XLA thread each (`JAX_NUM_CPU_DEVICES`,
  `PJRT_NPROC=1`); the default of every entry point when the user has not chosen;
- "default": JAX's own layout.

Both variables are read when JAX starts its CPU client, so `configure` must run before
the first computation (entry points call it before importing the harness). A user who set
`JAX_NUM_CPU_DEVICES`, `PJRT_NPROC` or `--xla_force_host_platform_device_count` has chosen:
nothing is changed then.
"""

from __future__ import annotations

import os
import sys

LAYOUTS = ("split", "default")
_CHOSEN = ("JAX_NUM_CPU_DEVICES", "PJRT_NPROC")
_in_effect: str | None = None  # what the first effective `configure` set


def user_chose() -> bool:
    """True when the environment already sets the CPU layout."""
    flags = os.environ.get("XLA_FLAGS", "")
    return any(name in os.environ for name in _CHOSEN) or (
        "xla_force_host_platform_device_count" in flags
    )


def configure(layout: str | None = None) -> str:
    """Sets the CPU layout for this process; returns the layout in effect.

    Args:
      layout: "split", "default", or None for what an earlier call chose, else "split"
        unless the environment already chose ("environment" is returned then).

    Returns:
      "split", "default", "environment" (left as the user set it) or "started" (JAX had
      already started its backends in this process with another device count: nothing
      can change any more).
    """
    global _in_effect
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"cpu layout must be one of {LAYOUTS}; got {layout!r}")
    if layout is None and _in_effect is not None:  # an earlier call of this process chose
        return _in_effect
    if layout is None and user_chose():
        _in_effect = "environment"
        return "environment"
    layout = layout or "split"
    if layout == "split":
        cores = os.cpu_count() or 1
        if "jax" in sys.modules:  # imported: its flag was read at import; set it directly
            import jax

            try:
                jax.config.update("jax_num_cpu_devices", cores)
            except RuntimeError:  # JAX refuses once its backends have started
                return "started"
        os.environ["JAX_NUM_CPU_DEVICES"] = str(cores)
        os.environ["PJRT_NPROC"] = "1"
    _in_effect = layout
    return layout


def in_effect() -> str:
    """The layout of this process: what `configure` set ("split", "default" or
    "environment"), else "environment" or "default" as the environment leaves it."""
    if _in_effect is not None:
        return _in_effect
    return "environment" if user_chose() else "default"
