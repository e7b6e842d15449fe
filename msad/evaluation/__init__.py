"""msad.evaluation."""
