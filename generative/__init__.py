"""Generative models trained against their own targets: Consistency Training (CT, iCT) and
the VAE with aggressive inference-network training."""
