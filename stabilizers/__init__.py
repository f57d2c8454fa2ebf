"""stabilizers: target networks, delayed updates and inner loops as optax transforms.

When a model learns toward a target that it, or a partner model, produces itself, the
target moves. The mechanisms that keep such training stable are small and recur across
fields; here each one is an `optax.GradientTransformation`:

- `ema(decay)`: soft / Polyak / momentum target (DDPG, TD3, SAC, MoCo, BYOL, CT);
- `periodic(every)`: hard target copy (DQN);
- `delayed(inner, every)`: a partner that moves every `every`-th step (TD3's policy);
- `update_target(tx, online, target, state)`: one call that moves a target;
- `schedules`: BYOL's cosine momentum, Consistency Training's N(k) and mu(k), iCT's
  curriculum;
- `lag(online, target)`: the relative distance every study logs;
- `SharedCount`, `seed_axes`: keep shared periods cheap under `jax.vmap` over seeds.
"""

from stabilizers import schedules
from stabilizers.delayed import DelayedState, delayed
from stabilizers.diagnostics import lag
from stabilizers.parallel import SharedCount, is_shared, seed_axes, shared_count
from stabilizers.targets import EmaState, PeriodicState, ema, periodic, update_target

__version__ = "0.1.0"

__all__ = [
    "DelayedState",
    "EmaState",
    "PeriodicState",
    "SharedCount",
    "delayed",
    "ema",
    "is_shared",
    "lag",
    "periodic",
    "schedules",
    "seed_axes",
    "shared_count",
    "update_target",
]
