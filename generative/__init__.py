"""Generative models trained through the harness: the VAE with aggressive inference."""
