"""Launchable, jitted studies and the one harness that drives every algorithm."""
