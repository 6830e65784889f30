"""bitwrk.protocol: canonical documents, signed requests, nonces, bid fields."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bitwrk.errors import AddressError, InvalidRequest, MoneyFormatError, SignatureError
from bitwrk.keys import PrivateKey, verify_message
from bitwrk.protocol import (
    BID_FIELDS,
    NonceSource,
    Value,
    bid_fields,
    canonical_document,
    sign_request,
    verify_request,
)

KEY = PrivateKey.from_wif("cUeKHd5orzT3mz8P9pxyREHfsWtVfgsfDjiZZBcjUBAaGk1BTj7N")
OTHER = PrivateKey.from_wif("cTDVKtMGVYWTHCb1AFjmVbEbWjvKpKqKgMaR3QJxToMSQAhmCeTN")
ADDRESS = "mpLQjfK79b7CCV4VMJWEWAj5Mpx8Up5zxB"
ARTICLE = "net.bitwrk/blender/4.2/2G~trusted"


def _fields(**extra: Value) -> dict[str, Value]:
    return {"action": "bid", "exchange": "ex-1", "nonce": 1_700_000_000_000_000, **extra}


# --- canonical documents ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "document"),
    [
        ({}, ""),
        ({"a": "1"}, "a=1"),
        ({"b": "2", "a": 1, "signature": "ignored"}, "a=1&b=2"),
        ({"z": -5, "a_b": "", "m": 0}, "a_b=&m=0&z=-5"),
        ({"v": "x y"}, "v=x%20y"),  # space is %20, never "+"
        ({"v": "a+b"}, "v=a%2Bb"),
        ({"v": "a/b"}, "v=a%2Fb"),
        ({"v": "~-_."}, "v=~-_."),  # RFC 3986 unreserved characters stay
        ({"v": "a&b=c"}, "v=a%26b%3Dc"),
        ({"v": "100%"}, "v=100%25"),
        ({"v": "µ"}, "v=%C2%B5"),  # UTF-8, then percent-encoded
        ({"v": "日本"}, "v=%E6%97%A5%E6%9C%AC"),
        ({"v": "🎬"}, "v=%F0%9F%8E%AC"),
        ({"v": "line\nbreak"}, "v=line%0Abreak"),
        ({"v": "?#[]@!$'()*,;:"}, "v=%3F%23%5B%5D%40%21%24%27%28%29%2A%2C%3B%3A"),
    ],
)
def test_canonical_document(fields: dict[str, Value], document: str) -> None:
    assert canonical_document(fields) == document


def test_canonical_document_of_a_bid() -> None:
    fields = bid_fields(
        exchange="ex-1",
        address=ADDRESS,
        nonce=1_700_000_000_000_000,
        type="buy",
        article=ARTICLE,
        price=150_000,
    )
    assert canonical_document(fields) == (
        "action=bid&address=mpLQjfK79b7CCV4VMJWEWAj5Mpx8Up5zxB"
        "&article=net.bitwrk%2Fblender%2F4.2%2F2G~trusted&exchange=ex-1"
        "&nonce=1700000000000000&price=150000&type=buy"
    )


def test_canonical_document_ignores_insertion_order() -> None:
    a = {"x": "1", "b": "2", "a": "3"}
    assert canonical_document(a) == canonical_document(dict(reversed(a.items())))


# --- signing and verifying --------------------------------------------------------------


def test_sign_then_verify_returns_the_signer() -> None:
    fields = _fields(price=150_000, article=ARTICLE, type="buy", note="a b&c=d/µ")
    body = sign_request(KEY, fields)
    assert body["address"] == ADDRESS
    assert set(body) == set(fields) | {"address", "signature"}
    assert verify_request(body) == ADDRESS
    assert verify_message(ADDRESS, str(body["signature"]), canonical_document(body))


def test_sign_request_is_deterministic_and_copies() -> None:
    fields = _fields()
    assert sign_request(KEY, fields) == sign_request(KEY, fields)
    assert "signature" not in fields and "address" not in fields


def test_sign_request_accepts_matching_address() -> None:
    assert verify_request(sign_request(KEY, _fields(address=ADDRESS))) == ADDRESS


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (_fields(address=OTHER.address), "address"),
        ({"exchange": "ex-1", "nonce": 1}, "action"),
        ({"action": "bid", "nonce": 1}, "exchange"),
        ({"action": "bid", "exchange": "ex-1"}, "nonce"),
        (_fields(nonce="1"), "nonce"),
        (_fields(nonce=0), "nonce"),
        (_fields(action=""), "action"),
        (_fields(action=1), "action"),
        (_fields(signature="x"), "signed"),
        (_fields(price=1.5), "price"),  # type: ignore[arg-type]
        (_fields(Price=1), "field names"),
    ],
)
def test_sign_request_rejects(fields: dict[str, Value], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match):
        sign_request(KEY, fields)


def _signed() -> dict[str, Any]:
    return dict(sign_request(KEY, _fields(price=150_000, article=ARTICLE, type="buy")))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda b: b.update(price=150_001),
        lambda b: b.update(article=ARTICLE + " "),
        lambda b: b.update(exchange="ex-2"),
        lambda b: b.update(nonce=b["nonce"] + 1),
        lambda b: b.update(extra="x"),
        lambda b: b.pop("type"),
        lambda b: b.update(address=OTHER.address),
        lambda b: b.update(signature=OTHER.sign_message(canonical_document(b))),
        lambda b: b.update(signature="AAAA"),
        lambda b: b.update(signature="x" * 88),
    ],
    ids=[
        "price",
        "article",
        "exchange",
        "nonce",
        "extra-field",
        "dropped-field",
        "other-address",
        "other-signer",
        "short-signature",
        "junk-signature",
    ],
)
def test_tampered_requests_fail(tamper: Any) -> None:
    body = _signed()
    tamper(body)
    with pytest.raises(SignatureError):
        verify_request(body)


def test_value_types_are_not_part_of_the_document() -> None:
    # "150000" and 150000 sign the same text; the handler's own check (check_price) is
    # what refuses a price sent as a string.
    body = _signed()
    body["price"] = "150000"
    assert verify_request(body) == ADDRESS


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (True, "bool"),
        (False, "bool"),
        (1.5, "float"),
        (None, "NoneType"),
        ([1], "list"),
        ({"a": 1}, "dict"),
        (b"x", "bytes"),
    ],
)
def test_verify_rejects_mistyped_values_naming_the_field(value: object, type_name: str) -> None:
    body = _signed()
    body["price"] = value
    with pytest.raises(InvalidRequest, match=f"'price'.*{type_name}") as info:
        verify_request(body)
    assert info.value.data["field"] == "price"


@pytest.mark.parametrize("key", ["Price", "a-b", "", "a" * 33, "prïce", "a b", "1a", 7, None])
def test_verify_rejects_bad_field_names(key: object) -> None:
    body: dict[Any, Any] = _signed()
    body[key] = "x"
    with pytest.raises(InvalidRequest, match="field names"):
        verify_request(body)


@pytest.mark.parametrize("name", ["action", "exchange", "address", "nonce", "signature"])
def test_verify_requires_each_core_field(name: str) -> None:
    body = _signed()
    del body[name]
    with pytest.raises(InvalidRequest, match=f"missing field.*{name}") as info:
        verify_request(body)
    assert info.value.data["missing"] == [name]


@pytest.mark.parametrize("nonce", [0, -1, "1700000000000000", 2**63])
def test_verify_rejects_bad_nonces(nonce: object) -> None:
    body = _signed()
    body["nonce"] = nonce
    with pytest.raises(InvalidRequest, match="nonce"):
        verify_request(body)


@pytest.mark.parametrize(
    "address",
    ["mpLQjfK79b7CCV4VMJWEWAj5Mpx8Up5zxC", "3CMNFxN1oHBc4R1EpboAL5yzHGgE611Xou", "nobody"],
)
def test_verify_rejects_invalid_addresses(address: str) -> None:
    body = _signed()
    body["address"] = address
    with pytest.raises(AddressError):
        verify_request(body)


@pytest.mark.parametrize("name", ["action", "exchange", "address", "signature"])
def test_verify_requires_string_core_fields(name: str) -> None:
    body = _signed()
    body[name] = 12
    with pytest.raises(InvalidRequest, match=name):
        verify_request(body)


@pytest.mark.parametrize("body", [[], "action=bid", None, 5])
def test_verify_rejects_non_mappings(body: Any) -> None:
    with pytest.raises(InvalidRequest):
        verify_request(body)


def test_verify_error_types_map_to_distinct_codes() -> None:
    assert SignatureError("x").code == "bad_signature"
    assert InvalidRequest("x").code == "invalid_request"


# --- nonces -----------------------------------------------------------------------------


def test_nonce_is_microseconds_of_the_clock() -> None:
    source = NonceSource(clock=lambda: 1_700_000_000_123_456_789)
    assert source() == 1_700_000_000_123_456


def test_nonce_strictly_increases_when_the_clock_stalls_or_goes_back() -> None:
    times = iter([5_000_000, 5_000_000, 4_000_000, 9_000_000])
    source = NonceSource(clock=lambda: next(times))
    assert [source() for _ in range(4)] == [5000, 5001, 5002, 9000]
    assert source.last == 9000


def test_nonce_resumes_after_start() -> None:
    source = NonceSource(start=10**18, clock=lambda: 0)
    assert source() == 10**18 + 1


def test_nonce_real_clock_is_plausible() -> None:
    source = NonceSource()
    first, second = source(), source()
    assert 1_600_000_000_000_000 < first < second


def test_nonce_is_thread_safe() -> None:
    source = NonceSource(clock=lambda: 0)  # every call contends on last + 1
    results: list[list[int]] = [[] for _ in range(8)]

    def draw(out: list[int]) -> None:
        for _ in range(2000):
            out.append(source())

    threads = [threading.Thread(target=draw, args=(out,)) for out in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [n for out in results for n in out]
    assert sorted(everything) == list(range(1, 16_001))
    assert all(out == sorted(out) for out in results)


# --- bids -------------------------------------------------------------------------------


def test_bid_fields() -> None:
    fields = bid_fields(
        exchange="ex-1", address=ADDRESS, nonce=7, type="sell", article=ARTICLE, price=0
    )
    assert set(fields) == BID_FIELDS
    assert fields["action"] == "bid" and fields["type"] == "sell" and fields["price"] == 0
    body = sign_request(KEY, fields)
    assert verify_request(body) == ADDRESS


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"type": "BUY"}, InvalidRequest),
        ({"type": "hold"}, InvalidRequest),
        ({"article": ""}, InvalidRequest),
        ({"price": 1.5}, MoneyFormatError),
        ({"price": True}, MoneyFormatError),
        ({"price": "150000"}, MoneyFormatError),
        ({"price": -1}, MoneyFormatError),
    ],
)
def test_bid_fields_rejects(change: dict[str, Any], error: type[Exception]) -> None:
    args: dict[str, Any] = {
        "exchange": "ex-1",
        "address": ADDRESS,
        "nonce": 7,
        "type": "buy",
        "article": ARTICLE,
        "price": 1,
    }
    with pytest.raises(error):
        bid_fields(**(args | change))
