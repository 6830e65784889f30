"""BitWrk — render on a marketplace from inside Blender (Blender 4.2+ extension root).

Nothing from ``bpy`` is imported at module level, so ``import bitwrk`` and ``import service``
work with plain Python next to this file. ``register()`` starts no network and no daemon.
"""

from __future__ import annotations


def register() -> None:
    from . import operators, panels

    operators.register()
    panels.register()


def unregister() -> None:
    from . import operators, panels

    panels.unregister()
    operators.unregister()
