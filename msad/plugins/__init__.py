"""msad.plugins."""
