"""A buy bid's seller terms (issue 10 item 4): the rule, its signed fields, and the order
book passing over asks the terms refuse."""

from __future__ import annotations

from typing import Any

import pytest

from bitwrk.errors import AddressError, InvalidRequest, SignatureError
from bitwrk.keys import PrivateKey
from bitwrk.protocol import (
    BID_FIELDS,
    BID_TERMS,
    MAX_EXCLUDED,
    SellerTerms,
    bid_fields,
    canonical_document,
    sign_request,
    verify_request,
)
from bitwrk.wire import BidType
from service.matching import MAX_PASSED_OVER, BookEntry, OrderBook, bid_terms, seller_admitted

KEY = PrivateKey.from_wif("cUeKHd5orzT3mz8P9pxyREHfsWtVfgsfDjiZZBcjUBAaGk1BTj7N")
SELLERS = [PrivateKey.generate("regtest").address for _ in range(3)]
ARTICLE = "net.bitwrk/blender/5.0/512M"


def record(finished: int, lost: int = 0) -> dict[str, int]:
    return {"finished": finished, "disputed": lost, "disputes_lost": lost,
            "establish_timeouts": 0}


def test_no_terms_admit_everyone_without_looking_at_a_record() -> None:
    def never() -> dict[str, int]:
        raise AssertionError("the record was looked up")

    assert SellerTerms().admits(SELLERS[0], never)
    assert SellerTerms().to_fields() == {}


@pytest.mark.parametrize(("terms", "counts", "admitted"), [
    (SellerTerms(min_finished=3), record(3), True),
    (SellerTerms(min_finished=3), record(2), False),
    (SellerTerms(min_finished=1), record(0), False),  # a fresh seller
    (SellerTerms(max_lost_pct=10), record(0), True),  # no decided trade: nothing lost
    (SellerTerms(max_lost_pct=10), record(9, 1), True),  # 1 of 10 lost = 10 %
    (SellerTerms(max_lost_pct=10), record(8, 1), False),  # 1 of 9 > 10 %
    (SellerTerms(max_lost_pct=0), record(100, 1), False),
    (SellerTerms(min_finished=5, max_lost_pct=50), record(5, 5), True),
    (SellerTerms(min_finished=5, max_lost_pct=50), record(4, 0), False),
])
def test_the_record_rule(terms: SellerTerms, counts: dict[str, int], admitted: bool) -> None:
    assert terms.admits(SELLERS[0], lambda: counts) is admitted


def test_an_excluded_seller_is_refused_whatever_its_record() -> None:
    terms = SellerTerms(exclude=frozenset({SELLERS[0]}))
    assert not terms.admits(SELLERS[0], lambda: record(1000))
    assert terms.admits(SELLERS[1], lambda: record(0))


def test_fields_round_trip_through_the_signed_document() -> None:
    terms = SellerTerms(7, 20, frozenset(SELLERS[:2]))
    fields = bid_fields(exchange="ex-1", address=KEY.address, nonce=9, type="buy",
                        article=ARTICLE, price=100, terms=terms)
    assert set(fields) == BID_FIELDS | BID_TERMS
    assert fields["exclude"] == ",".join(sorted(SELLERS[:2]))
    body = sign_request(KEY, fields)
    assert verify_request(body) == KEY.address
    assert SellerTerms.from_fields(body) == terms
    assert SellerTerms.from_document(canonical_document(body)) == terms
    plain = bid_fields(exchange="ex-1", address=KEY.address, nonce=9, type="buy",
                       article=ARTICLE, price=100, terms=SellerTerms())
    assert set(plain) == BID_FIELDS  # no terms: the bid document of before
    assert SellerTerms.from_document(canonical_document(plain)) == SellerTerms()


@pytest.mark.parametrize("change", [{"min_finished": 0}, {"max_lost_pct": 100},
                                    {"exclude": SELLERS[2]}])
def test_terms_cannot_be_altered_in_transit(change: dict[str, Any]) -> None:
    body = sign_request(KEY, bid_fields(
        exchange="ex-1", address=KEY.address, nonce=9, type="buy", article=ARTICLE, price=100,
        terms=SellerTerms(7, 20, frozenset(SELLERS[:1]))))
    with pytest.raises(SignatureError):
        verify_request({**body, **change})
    with pytest.raises(SignatureError):  # nor dropped
        verify_request({k: v for k, v in body.items() if k not in change})


@pytest.mark.parametrize("fields", [
    {"min_finished": -1}, {"min_finished": 1_000_001}, {"min_finished": "3"},
    {"min_finished": True}, {"max_lost_pct": -1}, {"max_lost_pct": 101},
    {"max_lost_pct": 2.5}, {"exclude": ""}, {"exclude": 7}, {"exclude": "nope"},
    {"exclude": f"{SELLERS[0]},"}, {"exclude": ",".join(
        PrivateKey.generate("regtest").address for _ in range(MAX_EXCLUDED + 1))},
])
def test_bad_terms_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest):
        SellerTerms.from_fields(fields)


def test_only_a_buy_bid_names_terms_and_excluded_sellers_are_of_the_network() -> None:
    with pytest.raises(InvalidRequest, match="only a buy bid"):
        bid_terms({"min_finished": 1}, BidType.SELL, "regtest")
    with pytest.raises(InvalidRequest, match="only a buy bid"):
        bid_fields(exchange="ex-1", address=KEY.address, nonce=9, type="sell",
                   article=ARTICLE, price=1, terms=SellerTerms(min_finished=1))
    mainnet = PrivateKey.generate("mainnet").address
    with pytest.raises(AddressError):
        bid_terms({"exclude": mainnet}, BidType.BUY, "regtest")
    assert bid_terms({}, BidType.SELL, "regtest") == SellerTerms()


# -- the order book -----------------------------------------------------------------------


def entry(bid_id: int, side: str, price: int, address: str, terms: SellerTerms | None = None
          ) -> BookEntry:
    return BookEntry(bid_id, address, BidType(side), price, 0, 100.0, terms or SellerTerms())


def test_a_buy_passes_over_asks_its_terms_refuse_and_keeps_price_time_order() -> None:
    records = {SELLERS[0]: record(0), SELLERS[1]: record(4), SELLERS[2]: record(9)}
    book = OrderBook()
    book.add(entry(1, "sell", 10, SELLERS[0]))  # cheapest, fresh
    book.add(entry(2, "sell", 20, SELLERS[1]))
    book.add(entry(3, "sell", 20, SELLERS[2]))  # same price, later
    buy = entry(9, "buy", 50, "buyer", SellerTerms(min_finished=3))

    def allowed(resting: BookEntry) -> bool:
        return seller_admitted(buy, resting, records.__getitem__)

    assert book.counterpart(buy, 0, allowed).bid_id == 2  # type: ignore[union-attr]
    strict = entry(9, "buy", 50, "buyer", SellerTerms(min_finished=5))
    assert book.counterpart(strict, 0, lambda r: seller_admitted(
        strict, r, records.__getitem__)).bid_id == 3  # type: ignore[union-attr]
    assert len(book) == 3  # nothing passed over was dropped
    assert book.counterpart(entry(9, "buy", 50, "buyer"), 0).bid_id == 1  # type: ignore[union-attr]


def test_a_new_ask_passes_over_resting_buys_whose_terms_refuse_it() -> None:
    book = OrderBook()
    book.add(entry(1, "buy", 90, "picky", SellerTerms(min_finished=1)))
    book.add(entry(2, "buy", 80, "plain"))
    ask = entry(9, "sell", 50, SELLERS[0])
    fresh = {SELLERS[0]: record(0)}
    assert book.counterpart(ask, 0, lambda r: seller_admitted(
        ask, r, fresh.__getitem__)).bid_id == 2  # type: ignore[union-attr]
    known = {SELLERS[0]: record(1)}
    assert book.counterpart(ask, 0, lambda r: seller_admitted(
        ask, r, known.__getitem__)).bid_id == 1  # type: ignore[union-attr]


def test_passing_over_is_bounded_then_the_bid_rests() -> None:
    """A crowd of fresh sellers below an established one costs a bounded scan; the buy
    then rests, and the established seller's next ask finds it (docs/buying.md)."""
    book = OrderBook()
    for i in range(MAX_PASSED_OVER + 1):
        book.add(entry(i + 1, "sell", 10, f"fresh{i}"))
    book.add(entry(1000, "sell", 20, SELLERS[2]))
    buy = entry(2000, "buy", 50, "buyer", SellerTerms(min_finished=1))
    looked: list[str] = []

    def rec(address: str) -> dict[str, int]:
        looked.append(address)
        return record(5 if address == SELLERS[2] else 0)

    assert book.counterpart(buy, 0, lambda r: seller_admitted(buy, r, rec)) is None
    assert len(looked) == MAX_PASSED_OVER + 1
    book.add(buy)
    ask = entry(3000, "sell", 20, SELLERS[2])
    assert book.counterpart(ask, 0, lambda r: seller_admitted(
        ask, r, rec)).bid_id == 2000  # type: ignore[union-attr]
