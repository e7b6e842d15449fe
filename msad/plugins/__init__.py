"""msad.plugins: the entry-point registry for backbones, necks, heads and distillation losses."""

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
    "PluginInfo",
    "available",
    "builder_options",
    "call_builder",
    "get_builder",
    "list_plugins",
    "plugin_options",
    "validate_options",
]
