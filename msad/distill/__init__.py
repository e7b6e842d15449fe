"""msad.distill."""
