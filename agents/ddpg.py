"""DDPG as the TD3 paper ran it ("Our DDPG"): `agents.td3` with `td3.PRESETS["ddpg"]`.

The networks, learning rates, batch size, tau and exploration are TD3's (Fujimoto et al.
2018, the authors' `OurDDPG.py`); the target is `r + gamma (1 - terminated) Q_bar(s',
pi_bar(s'))`, and the actor and the EMA targets move after every critic step.
`init`, `step`, `evaluate` and `units` are TD3's. This module keeps `--algo ddpg` a module
of its own until the registry names the preset (`"agents.td3:ddpg"`).

References:
  Lillicrap et al., Continuous control with deep reinforcement learning, 2015.
  Fujimoto, van Hoof & Meger, Addressing function approximation error in actor-critic
  methods, ICML 2018 (section 6.1, "Our DDPG").
"""

from __future__ import annotations

import dataclasses

from flax import struct

from agents import td3
from agents.td3 import Learner, State, Targets, check, evaluate, init, step, units

__all__ = [
    "Config",
    "Learner",
    "State",
    "Targets",
    "check",
    "evaluate",
    "init",
    "step",
    "units",
]

_DDPG = td3.PRESETS["ddpg"]


@struct.dataclass
class Config(td3.Config):
    """DDPG: TD3's config with `td3.PRESETS["ddpg"]`'s defaults."""

    num_critics: int = struct.field(pytree_node=False, default=_DDPG.num_critics)
    """Critics (DDPG: one; the target uses its value, no minimum)."""
    policy_delay: int = struct.field(pytree_node=False, default=_DDPG.policy_delay)
    """Critic steps per actor step (DDPG: 1, the actor and targets move every step)."""
    policy_noise: float = _DDPG.policy_noise
    """Std of the target policy smoothing noise (DDPG: none)."""
    noise_clip: float = _DDPG.noise_clip
    """Clip of the smoothing noise (DDPG: none)."""


def _on_ddpg(preset: td3.Config) -> Config:
    """What a TD3 `preset` changes from TD3's defaults, on DDPG's defaults."""
    default = td3.Config()
    changed = {
        f.name: getattr(preset, f.name)
        for f in dataclasses.fields(preset)
        if getattr(preset, f.name) != getattr(default, f.name)
    }
    return Config(**changed)


PRESETS = {"smoke": _on_ddpg(td3.PRESETS["smoke"])}
"""Named configs. "smoke": TD3's, a run of a few seconds on a CPU, to check an install."""
