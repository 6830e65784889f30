"""bitwrk.money: integer satoshi, parsing, formatting, fees."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bitwrk.errors import MoneyFormatError
from bitwrk.money import (
    MAX_SATOSHI,
    SAT_PER_BTC,
    UNITS,
    check_price,
    fee_for,
    format_amount,
    parse_amount,
)


def test_constants() -> None:
    assert SAT_PER_BTC == 100_000_000
    assert MAX_SATOSHI == 2_100_000_000_000_000
    assert UNITS["BTC"] == 10**8 and UNITS["mBTC"] == 10**5
    assert UNITS["µBTC"] == UNITS["uBTC"] == UNITS["μBTC"] == 100
    assert UNITS["sat"] == 1


@pytest.mark.parametrize(
    ("text", "sat"),
    [
        ("0.001 BTC", 100_000),
        ("BTC 0.001", 100_000),
        ("BTC0.001", 100_000),
        ("1.5mBTC", 150_000),
        ("1.5 mBTC", 150_000),
        ("mBTC 1.5", 150_000),
        ("1500 sat", 1500),
        ("1500sat", 1500),
        ("1 sats", 1),
        ("1 satoshi", 1),
        ("150 µBTC", 15_000),  # U+00B5 MICRO SIGN
        ("150 μBTC", 15_000),  # U+03BC GREEK SMALL LETTER MU
        ("150 uBTC", 15_000),
        ("123.45 µBTC", 12_345),
        ("0 BTC", 0),
        ("0.00000001 BTC", 1),
        ("1.000 sat", 1),  # trailing zeros are exact
        ("0.10000000000 BTC", 10_000_000),
        ("007 sat", 7),
        ("  2 BTC\n", 200_000_000),
        ("21000000 BTC", MAX_SATOSHI),
        # The original BitWrk's own spellings (reference §2.3) parse too.
        ("BTC 0.00012345", 12_345),
        ("mBTC 1.00", 100_000),
        ("satoshi 1", 1),
        ("uBTC 0.01", 1),
    ],
)
def test_parse_amount(text: str, sat: int) -> None:
    assert parse_amount(text) == sat


@pytest.mark.parametrize(
    ("text", "sat"),
    [
        ("-1.5 mBTC", -150_000),
        ("BTC -0.001", -100_000),
        ("-0 BTC", 0),
        ("-21000000 BTC", -MAX_SATOSHI),
    ],
)
def test_parse_negative_amount_when_allowed(text: str, sat: int) -> None:
    assert parse_amount(text, allow_negative=True) == sat
    if sat:
        with pytest.raises(MoneyFormatError, match="negative"):
            parse_amount(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "1",
        "1.5",
        "BTC",
        "sat",
        "abc",
        "1,5 mBTC",
        "1,000 sat",
        "1 000 sat",
        "1_000 sat",
        "0.000000001 BTC",
        "0.2 sat",
        "0.001 µBTC",
        "1.5 sats",
        "1.5 mBTC sat",
        "BTC 1 BTC",
        "1 BTC BTC",
        "1e3 sat",
        ".5 BTC",
        "5. BTC",
        "+1 BTC",
        "- 1 BTC",
        "-BTC 1",
        "1  BTC",
        "1 btc",
        "1 MBTC",
        "1 kBTC",
        "1 XBT",
        "$1",
        "１ BTC",
        "٣ sat",  # digits of other scripts
        "21000000.00000001 BTC",
        "21000001 BTC",
        "2100000000000001 sat",
        "9" * 60 + " sat",
        "1 BTC" + " " * 100,
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(MoneyFormatError):
        parse_amount(text)


@pytest.mark.parametrize("value", [None, 1, 1.5, b"1 BTC"])
def test_parse_rejects_non_strings(value: Any) -> None:
    with pytest.raises(MoneyFormatError):
        parse_amount(value)


def test_parse_error_carries_the_text() -> None:
    with pytest.raises(MoneyFormatError) as info:
        parse_amount("1,5 mBTC")
    assert info.value.code == "bad_amount"
    assert info.value.data["amount"] == "1,5 mBTC"


@pytest.mark.parametrize(
    ("sat", "text"),
    [
        (0, "0 BTC"),
        (1, "0.01 µBTC"),  # below 1 µBTC: still µBTC, never "sat" automatically
        (99, "0.99 µBTC"),
        (100, "1 µBTC"),
        (12_345, "123.45 µBTC"),
        (99_999, "999.99 µBTC"),
        (100_000, "1 mBTC"),
        (150_000, "1.5 mBTC"),
        (10_000_000, "100 mBTC"),
        (99_999_999, "999.99999 mBTC"),
        (100_000_000, "1 BTC"),
        (123_456_789, "1.23456789 BTC"),
        (MAX_SATOSHI, "21000000 BTC"),
        (-150_000, "-1.5 mBTC"),
        (-1, "-0.01 µBTC"),
    ],
)
def test_format_amount_auto_unit(sat: int, text: str) -> None:
    assert format_amount(sat) == text


@pytest.mark.parametrize(
    ("sat", "unit", "text"),
    [
        (1500, "sat", "1500 sat"),
        (1500, "sats", "1500 sat"),
        (1, "BTC", "0.00000001 BTC"),
        (150, "uBTC", "1.5 µBTC"),
        (150, "μBTC", "1.5 µBTC"),
        (150, "µBTC", "1.5 µBTC"),
        (0, "mBTC", "0 mBTC"),
        (-100_000_000, "mBTC", "-1000 mBTC"),
    ],
)
def test_format_amount_explicit_unit(sat: int, unit: str, text: str) -> None:
    assert format_amount(sat, unit) == text


def test_format_amount_rejects_bad_input() -> None:
    with pytest.raises(MoneyFormatError):
        format_amount(1, "XBT")
    for value in (True, 1.0, "1"):
        with pytest.raises(TypeError):
            format_amount(value)  # type: ignore[arg-type]


AMOUNTS = st.integers(min_value=-MAX_SATOSHI, max_value=MAX_SATOSHI)


@given(AMOUNTS)
def test_format_parse_round_trip(sat: int) -> None:
    assert parse_amount(format_amount(sat), allow_negative=True) == sat


@given(AMOUNTS, st.sampled_from(sorted(UNITS)))
def test_format_parse_round_trip_in_every_unit(sat: int, unit: str) -> None:
    assert parse_amount(format_amount(sat, unit), allow_negative=True) == sat


@given(st.integers(min_value=0, max_value=MAX_SATOSHI))
def test_formatted_amounts_never_end_in_zero_fractions(sat: int) -> None:
    number = format_amount(sat).split(" ")[0]
    assert "." not in number or not number.endswith(("0", "."))


@pytest.mark.parametrize(
    ("price", "bps", "fee"),
    [
        (0, 300, 0),
        (1, 300, 1),  # 0.03 sat rounds up
        (33, 300, 1),  # 0.99
        (34, 300, 2),  # 1.02
        (100, 300, 3),
        (10_000, 300, 300),
        (10_001, 300, 301),  # 300.03
        (12_345, 0, 0),
        (12_345, 10_000, 12_345),
        (MAX_SATOSHI, 300, 63_000_000_000_000),
        (MAX_SATOSHI - 1, 1, 210_000_000_000),  # 209999999999.9999 -> up
    ],
)
def test_fee_for_rounds_up(price: int, bps: int, fee: int) -> None:
    assert fee_for(price, bps) == fee


@given(st.integers(min_value=0, max_value=MAX_SATOSHI), st.integers(min_value=0, max_value=10_000))
def test_fee_for_is_exact_ceiling(price: int, bps: int) -> None:
    exact = Fraction(price * bps, 10_000)
    fee = fee_for(price, bps)
    assert fee - 1 < exact <= fee


@pytest.mark.parametrize(("price", "bps"), [(-1, 300), (1, -1), (1, 10_001)])
def test_fee_for_rejects_out_of_range(price: int, bps: int) -> None:
    with pytest.raises(ValueError):
        fee_for(price, bps)


@pytest.mark.parametrize("value", [0, 1, 150_000, MAX_SATOSHI])
def test_check_price_accepts_ints_in_range(value: int) -> None:
    assert check_price(value) == value
    assert type(check_price(value)) is int


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "integer number of satoshi, not bool"),
        (False, "not bool"),
        (1.0, "not float"),
        ("100", "not str"),
        (None, "not NoneType"),
        ([1], "not list"),
        (-1, "between 0 and"),
        (MAX_SATOSHI + 1, "between 0 and"),
    ],
)
def test_check_price_rejects(value: object, message: str) -> None:
    with pytest.raises(MoneyFormatError, match=message) as info:
        check_price(value)
    assert info.value.data == {"field": "price"}


def test_check_price_maximum_and_name() -> None:
    assert check_price(500, maximum=500) == 500
    with pytest.raises(MoneyFormatError, match="amount must be between 0 and 500") as info:
        check_price(501, maximum=500, name="amount")
    assert info.value.data == {"field": "amount"}
