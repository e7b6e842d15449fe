"""msad.ops."""
