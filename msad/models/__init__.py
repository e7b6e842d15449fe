"""msad.models."""
