"""Off-policy RL agents on gymnax, built on the `stabilizers` transforms.

Each agent is one module with the shape every algorithm of the project has
(`Config`, `init`, `step`, `evaluate`, `units`), so `benchmarks.harness` trains many seeds
and sweep points of it in one compiled program:

- `agents.dqn`: DQN (Mnih et al. 2015) and Double DQN (van Hasselt et al. 2016); target by
  `stabilizers.periodic` (hard copy), `stabilizers.ema` (soft) or none.
- `agents.td3`: TD3 (Fujimoto et al. 2018): twin critics, clipped double-Q, target policy
  smoothing, the actor and the targets delayed by `stabilizers.delayed`.
- `agents.ddpg`: DDPG (Lillicrap et al. 2015) as the TD3 paper ran it: `agents.td3` with one
  critic, no smoothing, no delay.
- `agents.sac`: SAC with a learned temperature (Haarnoja et al. 2018).

Shared pieces: `agents.envs` (gymnax environments, space checks, episode bookkeeping,
evaluation) and `agents.replay` (the replay buffer).
"""

ALGORITHMS = {
    "dqn": "agents.dqn",
    "ddpg": "agents.ddpg",
    "td3": "agents.td3",
    "sac": "agents.sac",
}
"""The family's registry: algorithm name -> module (imported only when chosen)."""
