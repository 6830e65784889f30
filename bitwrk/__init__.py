"""BitWrk core library: identity, money, signed documents and the exchange client.

Importing anything here never imports ``bpy`` or ``service`` (see docs/architecture.md).
"""

from __future__ import annotations

__version__ = "0.1.0"
