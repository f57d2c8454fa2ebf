"""Self-supervised representation learning against a momentum encoder: BYOL and MoCo."""

ALGORITHMS = {
    "byol": "representation.byol",
    "moco": "representation.moco",
    "moco_v2": "representation.moco:v2",
}
"""The family's registry: algorithm name -> module (imported only when chosen)."""
