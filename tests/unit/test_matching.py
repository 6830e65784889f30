"""The order book alone: price-time priority, crossing, lazy removal, depth."""

from __future__ import annotations

from service.matching import BookEntry, OrderBook, trade_terms


def entry(bid_id: int, side: str, price: int, expires: float = 100.0) -> BookEntry:
    return BookEntry(bid_id, f"addr{bid_id}", side, price, price * 3 // 100, expires)


def test_best_price_then_oldest() -> None:
    book = OrderBook()
    for e in (entry(1, "sell", 50), entry(2, "sell", 40), entry(3, "sell", 40)):
        book.add(e)
    assert book.counterpart(entry(9, "buy", 45), now=0).bid_id == 2  # type: ignore[union-attr]
    book.remove(2)
    assert book.counterpart(entry(9, "buy", 45), now=0).bid_id == 3  # type: ignore[union-attr]
    book.remove(3)
    assert book.counterpart(entry(9, "buy", 45), now=0) is None
    assert book.counterpart(entry(9, "buy", 50), now=0).bid_id == 1  # type: ignore[union-attr]


def test_buys_highest_first_and_equal_prices_cross() -> None:
    book = OrderBook()
    book.add(entry(1, "buy", 10))
    book.add(entry(2, "buy", 30))
    assert book.counterpart(entry(9, "sell", 30), now=0).bid_id == 2  # type: ignore[union-attr]
    assert book.counterpart(entry(9, "sell", 31), now=0) is None


def test_expired_entries_are_skipped_and_dropped() -> None:
    book = OrderBook()
    book.add(entry(1, "sell", 10, expires=5.0))
    book.add(entry(2, "sell", 20, expires=50.0))
    assert book.counterpart(entry(9, "buy", 100), now=6.0).bid_id == 2  # type: ignore[union-attr]
    assert len(book) == 1


def test_depth() -> None:
    book = OrderBook()
    for i, (side, price) in enumerate([("buy", 5), ("buy", 7), ("buy", 7), ("sell", 9),
                                       ("sell", 8)], start=1):
        book.add(entry(i, side, price))
    assert book.depth("buy", now=0) == [(7, 2), (5, 1)]
    assert book.depth("sell", now=0) == [(8, 1), (9, 1)]


def test_trade_terms_are_the_ask_and_the_buyers_entry_fee() -> None:
    """Issue 10 item 6 and issue 11: the seller's ask whichever bid rested; the buyer's fee
    fixed at its entry, scaled to the ask and rounded up; never more than was blocked."""
    buy = BookEntry(1, "b", "buy", 1000, 30, 100.0)  # entered at 3 %
    assert trade_terms(buy, BookEntry(2, "s", "sell", 700, 0, 100.0)) == (700, 21)
    assert trade_terms(buy, BookEntry(2, "s", "sell", 1000, 500, 100.0)) == (1000, 30)
    assert trade_terms(buy, BookEntry(2, "s", "sell", 1, 0, 100.0)) == (1, 1)
    assert trade_terms(buy, BookEntry(2, "s", "sell", 0, 0, 100.0)) == (0, 0)
    free = BookEntry(3, "b", "buy", 0, 0, 100.0)
    assert trade_terms(free, BookEntry(2, "s", "sell", 0, 0, 100.0)) == (0, 0)


def test_trade_terms_never_exceed_the_block() -> None:
    for price in range(0, 300):
        for fee in (0, 1, price * 3 // 100, price):
            buy = BookEntry(1, "b", "buy", price, fee, 100.0)
            for ask in range(0, price + 1, 7):
                p, f = trade_terms(buy, BookEntry(2, "s", "sell", ask, 0, 100.0))
                assert p == ask and 0 <= f <= fee and p + f <= price + fee
