"""The account at the exchange as the wallet panel shows it: balances, the last ledger
movements, the deposit address, withdrawals, and whether the exchange takes Bitcoin
payments at all — which its ``/api/v1/info`` says at connect (no bpy in here).

These requests block on the daemon: GUI operators run them as background tasks
(:mod:`.tasks`), scripts and ``execute()`` call them directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..bitwrk import wire
from ..bitwrk.errors import BitwrkError, PaymentsDisabled
from .status import NO_PAYMENTS, NOT_CONNECTED

if TYPE_CHECKING:
    from .bridge import Bridge

OPEN_WITHDRAWAL = ("pending", "exported")  # states of a withdrawal not yet paid out


def payments_offered(info: dict[str, Any]) -> bool | None:
    """Whether the exchange takes Bitcoin payments, as its ``/api/v1/info`` says (None:
    it does not say)."""
    offered = info.get("payments")
    return offered if isinstance(offered, bool) else None


class Account:
    """Owns the wallet's requests; what they find goes into the bridge's ``status``."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge

    def refresh(self, timeout: float = 10.0) -> None:
        """Account, balances, ledger and deposit address (whatever the exchange offers)."""
        status = self._bridge.status
        daemon = self._bridge.daemon
        if daemon is None or daemon.client is None:
            return
        client = daemon.client
        if client.outage():  # the daemon is retrying: don't block Blender behind it
            status.outage = client.outage() or ""
            return
        try:
            account: wire.Account = daemon.call(client.account(), timeout)
            status.available = account.available
            status.blocked = account.blocked
            page: wire.Ledger = daemon.call(client.ledger(limit=8), timeout)
            status.ledger = [{"kind": m.kind, "amount": m.delta_for(daemon.address)}
                             for m in page.movements]
            status.pending_withdrawals = account.pending_withdrawals
            status.deposit_address = account.deposit_address or None
        except Exception as exc:
            status.error = f"wallet: {exc}"
        if status.payments:
            try:
                found = daemon.call(client.withdrawals(limit=20), timeout)
                status.withdrawals = [w for w in found if w.get("state") in OPEN_WITHDRAWAL]
            except Exception as exc:
                status.error = f"withdrawals: {exc}"
        else:
            status.withdrawals = []

    def set_payments(self, offered: bool | None) -> None:
        """What the exchange said about payments (its info, or a ``payments_disabled``
        answer) and, when they are off, why the withdrawal form is."""
        status = self._bridge.status
        status.payments = offered
        status.payments_reason = "" if offered or offered is None else NO_PAYMENTS

    def request_deposit_address(self, timeout: float = 10.0) -> str | None:
        status = self._bridge.status
        daemon = self._bridge.daemon
        if daemon is None or daemon.client is None:
            return None
        try:
            found = daemon.call(daemon.client.request_deposit_address(), timeout)
            if isinstance(found, dict) and found.get("address"):
                status.deposit_address = str(found["address"])
                self.set_payments(True)
        except Exception as exc:
            if isinstance(exc, PaymentsDisabled):
                self.set_payments(False)
            else:
                status.error = f"no deposit address: {exc}"
        return status.deposit_address

    def withdraw(self, to: str, amount: int, timeout: float = 10.0) -> dict[str, Any]:
        """Ask for ``amount`` satoshi to ``to``; the wallet is refreshed. Raises
        :class:`BitwrkError` with the exchange's reason (minimum, balance, address...)."""
        daemon = self._bridge.daemon
        if daemon is None or daemon.client is None:
            raise BitwrkError(NOT_CONNECTED)
        to = to.strip()
        if not to:
            raise BitwrkError("enter the bitcoin address to pay out to")
        if amount <= 0:
            raise BitwrkError("enter an amount above zero")
        try:
            found: dict[str, Any] = daemon.call(daemon.client.withdraw(to, amount), timeout)
        except Exception as exc:
            if isinstance(exc, PaymentsDisabled):
                self.set_payments(False)
            raise
        self.set_payments(True)
        self.refresh(timeout)
        return found

    def cancel_withdrawal(self, withdrawal_id: int, timeout: float = 10.0) -> dict[str, Any]:
        """Cancel a pending withdrawal (the amount returns to the available balance)."""
        daemon = self._bridge.daemon
        if daemon is None or daemon.client is None:
            raise BitwrkError(NOT_CONNECTED)
        found: dict[str, Any] = daemon.call(daemon.client.cancel_withdrawal(withdrawal_id),
                                            timeout)
        self.refresh(timeout)
        return found
