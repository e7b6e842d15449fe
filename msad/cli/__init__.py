"""msad.cli."""
