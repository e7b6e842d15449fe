"""msad.data."""
