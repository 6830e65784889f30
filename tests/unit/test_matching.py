"""The order book alone: price-time priority, crossing, lazy removal, depth."""

from __future__ import annotations

from service.matching import BookEntry, OrderBook


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
