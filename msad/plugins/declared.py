"""A plugin's option declaration (:mod:`msad.plugin_declarations`), read through the registry and checked there."""

from __future__ import annotations

from msad.errors import PluginError
from msad.plugin_declarations import OptionDeclaration, declaration_of
from msad.plugins.registry import GROUPS, get_builder, plugin_options

__all__ = ["declared_options"]


def declared_options(group: str, name: str) -> OptionDeclaration:
    """What plugin ``name`` of ``group`` declares about its options (empty when it declares nothing); imports that
    plugin only.

    Raises:
        PluginError: the plugin is unknown or fails to load, its declaration is not msad's, or it declares a name
            that is not one of its recipe options (e.g. an argument msad supplies, such as a head's ``levels``).
    """
    builder = get_builder(group, name)
    noun = GROUPS[group]
    try:
        declaration = declaration_of(builder)
    except TypeError as err:
        raise PluginError(f"{noun} '{name}': {err}") from None
    options = plugin_options(group, name)
    for option, kind in declaration.names().items():
        if option not in options:
            raise PluginError(
                f"{noun} '{name}' declares {option!r} ({kind}), which is not one of its recipe options "
                f"({', '.join(options) or 'none'})"
            )
    return declaration
