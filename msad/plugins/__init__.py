"""msad.plugins: the entry-point registry for backbones, necks, heads and distillation losses, and what each plugin
declares about its options (:func:`declare_options`, read back with :func:`declared_options`)."""

from msad.plugin_declarations import OptionDeclaration, declare_options
from msad.plugins.declared import declared_options
from msad.plugins.registry import (
    BUILTIN_DISTRIBUTION,
    FRAMEWORK_ARGS,
    GROUPS,
    PluginInfo,
    available,
    builder_options,
    call_builder,
    get_builder,
    list_plugins,
    plugin_options,
    validate_options,
)

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "FRAMEWORK_ARGS",
    "GROUPS",
    "OptionDeclaration",
    "PluginInfo",
    "available",
    "builder_options",
    "call_builder",
    "declare_options",
    "declared_options",
    "get_builder",
    "list_plugins",
    "plugin_options",
    "validate_options",
]
