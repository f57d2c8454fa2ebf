"""Generative models trained against their own targets: Consistency Training (CT, iCT) and
the VAE with aggressive inference-network training."""

ALGORITHMS = {
    "ct": "generative.consistency",
    "ict": "generative.consistency:ict",
    "vae": "generative.vae",
}
"""The family's registry: algorithm name -> module (imported only when chosen)."""
