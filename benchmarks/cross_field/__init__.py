"""The cross-field study: one mechanism (a target network) compared across fields on one axis."""
