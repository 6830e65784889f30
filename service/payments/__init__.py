"""Bitcoin payments with no private keys on the server (docs/operator.md).

Deposit addresses derive from the operator's extended public key; a chain watcher (Bitcoin
Core JSON-RPC or Esplora) credits confirmed deposits exactly once; withdrawals wait as
pending until the operator exports them as one unsigned PSBT, signs offline and the
exchange sees the transaction. Pinned interface for other tools: :func:`deposit_address`.
"""

from __future__ import annotations

from .derivation import deposit_address

__all__ = ["deposit_address"]
