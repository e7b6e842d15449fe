"""msad.tools."""
