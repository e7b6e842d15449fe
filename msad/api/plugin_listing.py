"""The plugin listing: every plugin of every group with its load status, ``msad plugins``'s API.

Named ``plugin_listing`` rather than ``plugins``: :mod:`msad.api` re-exports the function :func:`plugins`, which a
submodule of the same name would shadow (``msad.api.plugins`` would mean the module or the function by import order).
"""

from __future__ import annotations

from msad.plugins import PluginInfo, list_plugins

__all__ = ["plugins"]


def plugins(*, check: bool = True) -> list[PluginInfo]:
    """Every plugin of every group with its distribution, version and load status (never raises); with
    ``check=False`` from the entry points' metadata only (nothing imported, status ``installed``)."""
    return list_plugins(load=check)
