"""stabilizers: target networks, delayed updates and inner loops as optax transforms.

When a model learns toward a target that it, or a partner model, produces itself, the
target moves. The mechanisms that keep such training stable are small and recur across
fields; here each one is an `optax.GradientTransformation`:

- `ema(decay)`: soft / Polyak / momentum target (DDPG, TD3, SAC, MoCo, BYOL, CT);
- `periodic(every, decay=0)`: hard target copy (DQN), or an EMA step every N updates;
- `mean_age`, `ema_decay_for_age`: the target's mean age, the axis shared by both;
- `delayed(inner, every)`: a partner that moves every `every`-th step (TD3's policy);
- `update_target(tx, online, target, state)`: one call that moves a target;
- `schedules`: BYOL's cosine momentum, Consistency Training's N(k) and mu(k), iCT's
  curriculum;
- `lag(online, target)`: the relative distance every study logs;
- `until_converged(step, carry, max_steps, window)`: an inner loop that trains a lagging
  partner until its windowed loss stops improving (He et al.'s aggressive encoder);
- `switch_off(patience, compare)`: a phase that ends for good once a monitored metric
  stops improving (the end of the aggressive phase);
- `SharedCount`, `seed_axes`: keep shared periods cheap under `jax.vmap` over seeds;
- `checks`: the argument checks the transforms use, for configs built on them.
"""

from stabilizers import checks, schedules
from stabilizers.aggressive import (
    InnerLoopInfo,
    SwitchOff,
    SwitchOffState,
    switch_off,
    until_converged,
)
from stabilizers.delayed import DelayedState, DelayedTransformation, delayed
from stabilizers.diagnostics import lag
from stabilizers.parallel import SharedCount, is_shared, seed_axes, shared_count
from stabilizers.targets import (
    EmaState,
    PeriodicState,
    ema,
    ema_decay_for_age,
    mean_age,
    periodic,
    update_target,
)

__version__ = "0.1.0"

__all__ = [
    "DelayedState",
    "DelayedTransformation",
    "EmaState",
    "InnerLoopInfo",
    "PeriodicState",
    "SharedCount",
    "SwitchOff",
    "SwitchOffState",
    "checks",
    "delayed",
    "ema",
    "ema_decay_for_age",
    "is_shared",
    "lag",
    "mean_age",
    "periodic",
    "schedules",
    "seed_axes",
    "shared_count",
    "switch_off",
    "until_converged",
    "update_target",
]
