"""Generative models trained against their own targets: Consistency Training (CT, iCT)."""
