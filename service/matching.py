"""Price-time priority order books, one per article (pure: no I/O, no awaits).

A book answers "which resting bid would this incoming bid trade with?" without changing
anything; the exchange commits the trade to the store first and only then tells the book
(`take` / `add`), so a failed commit never leaves memory and disk disagreeing.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bitwrk.errors import InvalidRequest
from bitwrk.keys import check_address
from bitwrk.protocol import BID_TERMS, SellerTerms
from bitwrk.wire import BidType

# Resting bids an incoming bid may pass over (avoided parties, sellers a buy bid's terms
# refuse) before it rests instead: matching stays cheap however many there are.
MAX_PASSED_OVER = 64
NO_TERMS = SellerTerms()


@dataclass(frozen=True)
class BookEntry:
    bid_id: int  # increasing with arrival: the time priority
    address: str
    type: BidType
    price: int
    fee: int
    expires: float
    terms: SellerTerms = NO_TERMS  # a buy bid's: what its seller's record must show


def bid_terms(fields: Mapping[str, object], side: BidType, network: str) -> SellerTerms:
    """The seller terms of a bid's fields (InvalidRequest when malformed): only a buy bid
    names them, and excluded sellers must be addresses of the exchange's network."""
    if side != BidType.BUY and BID_TERMS & fields.keys():
        raise InvalidRequest("only a buy bid asks for a seller record or excludes sellers",
                             unexpected=sorted(BID_TERMS & fields.keys()))
    terms = SellerTerms.from_fields(fields)
    for seller in terms.exclude:
        check_address(seller, network)
    return terms


def seller_admitted(incoming: BookEntry, resting: BookEntry,
                    record: Callable[[str], Mapping[str, int]]) -> bool:
    """Whether the buy bid of the two accepts the other's seller (``record(address)``: the
    seller's public counts, looked up only when the buy bid asks for a record). Checked
    both ways, so a resting buy is re-checked against each new ask and a resting ask
    against each new buy."""
    buy, sell = (incoming, resting) if incoming.type == BidType.BUY else (resting, incoming)
    return buy.terms.admits(sell.address, lambda: record(sell.address))


def crosses(incoming: BookEntry, resting: BookEntry) -> bool:
    if incoming.type == BidType.BUY:
        return incoming.price >= resting.price
    return incoming.price <= resting.price


def trade_terms(buy: BookEntry, sell: BookEntry) -> tuple[int, int]:
    """(price, fee) of a crossing: the seller's ask, whichever bid rested (issue 10 item 6),
    and the buyer's fee fixed at its bid's entry, scaled to the ask and rounded up. Both
    never exceed what the buy bid blocked, so a changed ``--fee-bps`` cannot break a
    match with an older bid; the buyer's surplus is released at once."""
    price = sell.price
    if buy.price == 0:
        return price, 0
    fee = min(buy.fee, -(-buy.fee * price // buy.price))
    return price, fee


class OrderBook:
    """Both sides of one article's book. Removal is lazy: dead ids are skipped on peek."""

    def __init__(self) -> None:
        self.version = 0  # changes whenever the live entries do (cached views check it)
        self._live: dict[int, BookEntry] = {}
        # buys: highest price first; sells: lowest first; then lowest bid id (oldest) first
        self._heaps: dict[str, list[tuple[int, int]]] = {BidType.BUY: [], BidType.SELL: []}

    def __len__(self) -> int:
        return len(self._live)

    def add(self, entry: BookEntry) -> None:
        self.version += 1
        self._live[entry.bid_id] = entry
        key = -entry.price if entry.type == BidType.BUY else entry.price
        heapq.heappush(self._heaps[entry.type], (key, entry.bid_id))

    def remove(self, bid_id: int) -> None:
        if self._live.pop(bid_id, None) is not None:
            self.version += 1

    def best(self, side: str, now: float) -> BookEntry | None:
        """The best live, unexpired entry on ``side``; expired ones are dropped from memory
        (the store's retirement books their money)."""
        heap = self._heaps[side]
        while heap:
            entry = self._live.get(heap[0][1])
            if entry is not None and entry.expires > now:
                return entry
            heapq.heappop(heap)
            if entry is not None:
                del self._live[entry.bid_id]
                self.version += 1
        return None

    def counterpart(self, incoming: BookEntry, now: float,
                    allowed: Callable[[BookEntry], bool] | None = None) -> BookEntry | None:
        """The resting bid ``incoming`` trades with, or None (then it rests): the best that
        crosses and that ``allowed`` accepts (a party that avoids the other, a seller the
        buy bid's terms refuse is passed over; at most MAX_PASSED_OVER of them, so neither
        an avoid list nor a crowd of fresh sellers can make matching costly)."""
        side = BidType.SELL if incoming.type == BidType.BUY else BidType.BUY
        heap = self._heaps[side]
        passed: list[tuple[int, int]] = []
        try:
            while (best := self.best(side, now)) is not None and crosses(incoming, best):
                if allowed is None or allowed(best):
                    return best
                if len(passed) >= MAX_PASSED_OVER:
                    return None
                passed.append(heapq.heappop(heap))
            return None
        finally:
            for item in passed:
                heapq.heappush(heap, item)

    def depth(self, side: str, now: float) -> list[tuple[int, int]]:
        """[(price, count)] best first."""
        counts = Counter(
            e.price for e in self._live.values() if e.type == side and e.expires > now
        )
        return sorted(counts.items(), reverse=(side == BidType.BUY))


class Books:
    """All articles' books."""

    def __init__(self) -> None:
        self._books: dict[str, OrderBook] = {}

    def get(self, article: str) -> OrderBook:
        book = self._books.get(article)
        if book is None:
            book = self._books[article] = OrderBook()
        return book

    def articles(self) -> list[str]:
        return sorted(a for a, b in self._books.items() if len(b))
