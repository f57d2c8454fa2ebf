"""DDPG as the TD3 paper ran it ("Our DDPG"): `agents.td3` with one critic, no delay and
no target policy smoothing.

The networks, learning rates, batch size, tau and exploration are TD3's (Fujimoto et al.
2018, the authors' `OurDDPG.py`); the target is `r + gamma (1 - terminated) Q_bar(s',
pi_bar(s'))`, and the actor and the EMA targets move after every critic step.
`init`, `step`, `evaluate` and `units` are TD3's.

References:
  Lillicrap et al., Continuous control with deep reinforcement learning, 2015.
  Fujimoto, van Hoof & Meger, Addressing function approximation error in actor-critic
  methods, ICML 2018 (section 6.1, "Our DDPG").
"""

from __future__ import annotations

from flax import struct

from agents import td3
from agents.td3 import Item, Learner, State, Targets, check, evaluate, init, step, units

__all__ = [
    "Config",
    "Item",
    "Learner",
    "State",
    "Targets",
    "check",
    "evaluate",
    "init",
    "step",
    "units",
]


@struct.dataclass
class Config(td3.Config):
    """DDPG: TD3's config with one critic, no delay and no target policy smoothing."""

    num_critics: int = struct.field(pytree_node=False, default=1)
    """Critics (DDPG: one; the target uses its value, no minimum)."""
    policy_delay: int = struct.field(pytree_node=False, default=1)
    """Critic steps per actor step (DDPG: 1, the actor and targets move every step)."""
    policy_noise: float = 0.0
    """Std of the target policy smoothing noise (DDPG: none)."""
    noise_clip: float = 0.0
    """Clip of the smoothing noise (DDPG: none)."""


PRESETS = {
    "smoke": Config(
        total_steps=300,
        buffer_size=512,
        batch_size=32,
        hidden=(16,),
        learning_starts=100,
        eval_episodes=2,
    ),
}
"""Named configs. "smoke": a run of a few seconds on a CPU, to check an install."""
