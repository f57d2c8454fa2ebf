"""Off-policy RL agents on gymnax, built on the `stabilizers` transforms.

Each agent is one module with the shape every algorithm of the project has
(`Config`, `init`, `step`, `evaluate`, `units`), so `benchmarks.harness` trains many seeds
and sweep points of it in one compiled program:

- `agents.dqn`: DQN (Mnih et al. 2015) and Double DQN (van Hasselt et al. 2016); target by
  `stabilizers.periodic` (hard copy), `stabilizers.ema` (soft) or none.
- `agents.td3`: TD3 (Fujimoto et al. 2018): twin critics, clipped double-Q, target policy
  smoothing, the actor and the targets delayed by `stabilizers.delayed`; DDPG (Lillicrap
  et al. 2015) as the TD3 paper ran it is its preset `td3.PRESETS["ddpg"]`, registered as
  "ddpg".
- `agents.sac`: SAC with a learned temperature (Haarnoja et al. 2018), with CrossQ's
  critic (Bhatt et al. 2024, `agents.crossq`) as an option.

Shared pieces: `agents.actor_critic` (the loop, critic regression and evaluation TD3 and
SAC share), `agents.offpolicy` (the run state and step bookkeeping of every agent),
`agents.replay` (the replay buffer), `agents.envs` (gymnax environments, space checks,
episode bookkeeping, evaluation) and `agents.networks`.
"""

ALGORITHMS = {
    "dqn": "agents.dqn",
    "ddpg": "agents.td3:ddpg",
    "td3": "agents.td3",
    "sac": "agents.sac",
}
"""The family's registry: algorithm name -> module (imported only when chosen)."""
