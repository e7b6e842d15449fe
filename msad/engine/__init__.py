"""msad.engine."""
