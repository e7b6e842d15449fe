"""msad.config."""
