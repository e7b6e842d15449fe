"""Example third-party msad plugin package.

It registers two plugins through entry points (see ``pyproject.toml``):

- backbone ``tiny_vgg`` (:func:`msad_plugin_example.backbone.build_tiny_vgg`), a small VGG-style conv net;
- distillation loss ``attention`` (:func:`msad_plugin_example.losses.build_attention_transfer`), attention transfer.

Importing this package is cheap: msad loads each entry point only when a recipe (or ``msad plugins``) asks for it.
"""

__version__ = "0.1.0"
