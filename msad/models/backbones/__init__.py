"""msad.models.backbones."""
