"""Double-entry money movements (pure: no I/O).

Every movement has four deltas — the available balance of one account, the blocked balance
of one account, the operator's fee pot and the outside world — that sum to zero, and each
kind obeys a sign rule. The store applies them; balances never go negative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class Kind(StrEnum):
    BID = "bid"  # buyer blocks price + fee
    BID_RELEASE = "bid_release"  # an unmatched buy bid expires or is cancelled
    MATCH_SURPLUS = "match_surplus"  # buyer blocked more than the trade costs
    SETTLE = "settle"  # buyer's block pays the seller and the fee
    REFUND = "refund"  # a failed trade returns the buyer's block
    DEPOSIT = "deposit"  # money enters from the world
    # Withdrawals (service/payments). A requested withdrawal leaves the balances at once; the
    # withdrawals table holds it as pending (cancellable, then exported) until it is paid, so
    # Σ balances + fees + pending withdrawals = Σ credited deposits − Σ paid withdrawals.
    WITHDRAWAL = "withdrawal"  # available → pending payout
    WITHDRAWAL_CANCEL = "withdrawal_cancel"  # pending payout → available
    WITHDRAWAL_PAID = "withdrawal_paid"  # a record only: the payout transaction confirmed


def _le0(x: int) -> bool:
    return x <= 0


def _ge0(x: int) -> bool:
    return x >= 0


def _eq0(x: int) -> bool:
    return x == 0


def _gt0(x: int) -> bool:
    return x > 0


def _lt0(x: int) -> bool:
    return x < 0


_Rule = tuple[Callable[[int], bool], ...]
# (available, blocked, fee, world) per kind; after the original BitWrk's account.go table.
SIGN_RULES: dict[Kind, _Rule] = {
    Kind.BID: (_le0, _ge0, _eq0, _eq0),
    Kind.BID_RELEASE: (_ge0, _le0, _eq0, _eq0),
    Kind.MATCH_SURPLUS: (_ge0, _le0, _eq0, _eq0),
    Kind.REFUND: (_ge0, _le0, _eq0, _eq0),
    Kind.SETTLE: (_ge0, _le0, _ge0, _eq0),
    Kind.DEPOSIT: (_gt0, _eq0, _eq0, _lt0),
    Kind.WITHDRAWAL: (_lt0, _eq0, _eq0, _gt0),
    Kind.WITHDRAWAL_CANCEL: (_gt0, _eq0, _eq0, _lt0),
    Kind.WITHDRAWAL_PAID: (_eq0, _eq0, _eq0, _eq0),
}


class LedgerRuleError(AssertionError):
    """A movement that breaks double entry: a programming error, never user input."""


@dataclass(frozen=True)
class Movement:
    kind: Kind
    available_account: str | None
    available_delta: int
    blocked_account: str | None
    blocked_delta: int
    fee_delta: int = 0
    world_delta: int = 0

    def __post_init__(self) -> None:
        deltas = (self.available_delta, self.blocked_delta, self.fee_delta, self.world_delta)
        if sum(deltas) != 0:
            raise LedgerRuleError(f"{self.kind}: deltas {deltas} do not sum to zero")
        if not all(rule(d) for rule, d in zip(SIGN_RULES[self.kind], deltas, strict=True)):
            raise LedgerRuleError(f"{self.kind}: deltas {deltas} break the sign rule")
        if (self.available_delta and not self.available_account) or (
            self.blocked_delta and not self.blocked_account
        ):
            raise LedgerRuleError(f"{self.kind}: a non-zero delta without an account")


def block_for_bid(buyer: str, amount: int) -> Movement:
    return Movement(Kind.BID, buyer, -amount, buyer, amount)


def release_bid(buyer: str, amount: int) -> Movement:
    return Movement(Kind.BID_RELEASE, buyer, amount, buyer, -amount)


def release_surplus(buyer: str, amount: int) -> Movement:
    return Movement(Kind.MATCH_SURPLUS, buyer, amount, buyer, -amount)


def settle(buyer: str, seller: str, price: int, fee: int) -> Movement:
    return Movement(Kind.SETTLE, seller, price, buyer, -(price + fee), fee_delta=fee)


def refund(buyer: str, amount: int) -> Movement:
    return Movement(Kind.REFUND, buyer, amount, buyer, -amount)


def deposit(account: str, amount: int) -> Movement:
    return Movement(Kind.DEPOSIT, account, amount, None, 0, world_delta=-amount)


def withdraw(account: str, amount: int) -> Movement:
    return Movement(Kind.WITHDRAWAL, account, -amount, None, 0, world_delta=amount)


def cancel_withdrawal(account: str, amount: int) -> Movement:
    return Movement(Kind.WITHDRAWAL_CANCEL, account, amount, None, 0, world_delta=-amount)


def withdrawal_paid(account: str) -> Movement:
    return Movement(Kind.WITHDRAWAL_PAID, account, 0, None, 0)
