"""Money is an ``int`` of satoshi everywhere; this module parses and prints it for people.

Units (docs/protocol.md): BTC = 10^8 sat, mBTC = 10^5, µBTC (also uBTC) = 10^2, sat = 1.

Formatting (``format_amount``) writes ``"<amount> <unit>"`` with trailing fraction zeros
trimmed, e.g. ``12345 -> "123.45 µBTC"``. Without an explicit unit it picks the largest of
BTC, mBTC and µBTC whose factor is at most |amount|; amounts under 1 µBTC still print in
µBTC (``1 -> "0.01 µBTC"``) and ``sat`` is used only when asked for, as in the original
BitWrk. Zero prints as ``"0 BTC"``. Unlike the
original the amount comes first; the parser accepts either order.
"""

from __future__ import annotations

import re
from types import MappingProxyType

from .errors import MoneyFormatError

__all__ = [
    "MAX_SATOSHI",
    "SAT_PER_BTC",
    "UNITS",
    "check_price",
    "fee_for",
    "format_amount",
    "parse_amount",
]

SAT_PER_BTC = 100_000_000
# The 21 million coin cap (Bitcoin Core src/consensus/amount.h MAX_MONEY).
MAX_SATOSHI = 21_000_000 * SAT_PER_BTC

MICRO = "µBTC"  # U+00B5 MICRO SIGN, the spelling format_amount writes

# Every spelling the parser accepts, to its factor in satoshi. "μBTC" uses U+03BC GREEK
# SMALL LETTER MU, which keyboards produce as often as the micro sign.
UNITS = MappingProxyType(
    {
        "BTC": SAT_PER_BTC,
        "mBTC": 100_000,
        MICRO: 100,
        "μBTC": 100,
        "uBTC": 100,
        "sat": 1,
        "sats": 1,
        "satoshi": 1,
    }
)
_CANONICAL = MappingProxyType({"μBTC": MICRO, "uBTC": MICRO, "sats": "sat", "satoshi": "sat"})
_AUTO_UNITS = ("BTC", "mBTC", MICRO)  # largest first; "sat" is never chosen automatically
_BPS_PER_UNIT = 10_000  # basis points in 100 %
_MAX_TEXT = 64

_UNIT_RE = "|".join(sorted((re.escape(u) for u in UNITS), key=len, reverse=True))
# Unit before or after the number, at most one space between; [0-9] rather than \d so
# that other scripts' digits are refused; no thousands separators, no decimal comma.
_AMOUNT = re.compile(
    rf"(?:(?P<pre>{_UNIT_RE}) ?)?(?P<sign>-)?(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]+))?"
    rf"(?: ?(?P<post>{_UNIT_RE}))?"
)


def _unit_factor(unit: str) -> int:
    factor = UNITS.get(unit)
    if factor is None:
        raise MoneyFormatError(f"unknown unit {unit!r}; use one of {', '.join(UNITS)}")
    return factor


def _match_amount(text: str) -> re.Match[str]:
    if not isinstance(text, str):
        raise MoneyFormatError("an amount is a string like '0.001 BTC'")
    match = _AMOUNT.fullmatch(text.strip()) if len(text) <= _MAX_TEXT else None
    if match is None or (match["pre"] is None) == (match["post"] is None):
        raise MoneyFormatError(
            f"not an amount: {text[:_MAX_TEXT]!r} (write e.g. '0.001 BTC', '1.5 mBTC', '1500 sat')",
            amount=text[:_MAX_TEXT],
        )
    return match


def _to_satoshi(integer: str, fraction: str, factor: int, text: str) -> int:
    places = len(str(factor)) - 1  # factors are powers of ten
    fraction = fraction.rstrip("0")
    if len(fraction) > places:
        raise MoneyFormatError(f"{text!r} is not a whole number of satoshi", amount=text)
    return int(integer) * factor + (int(fraction.ljust(places, "0")) if fraction else 0)


def parse_amount(text: str, *, allow_negative: bool = False) -> int:
    """Satoshi from text such as ``"0.001 BTC"``, ``"BTC 0.001"``, ``"1.5mBTC"``, ``"1500 sat"``.

    MoneyFormatError for junk, a missing or unknown unit, fractions finer than a satoshi,
    a minus sign unless ``allow_negative``, or more than MAX_SATOSHI in absolute value.
    """
    match = _match_amount(text)
    factor = _unit_factor(match["pre"] or match["post"])
    value = _to_satoshi(match["int"], match["frac"] or "", factor, text)
    if match["sign"] and not allow_negative:
        raise MoneyFormatError(f"negative amount not allowed: {text!r}", amount=text)
    if value > MAX_SATOSHI:
        raise MoneyFormatError(f"{text!r} is more than 21 million BTC", amount=text)
    return -value if match["sign"] else value


def _auto_unit(magnitude: int) -> str:
    if magnitude == 0:
        return "BTC"
    for unit in _AUTO_UNITS:
        if UNITS[unit] <= magnitude:
            return unit
    return MICRO


def format_amount(sat: int, unit: str | None = None) -> str:
    """``"<amount> <unit>"`` for an int of satoshi; ``unit`` None picks one (module doc)."""
    if isinstance(sat, bool) or not isinstance(sat, int):
        raise TypeError(f"format_amount takes an int of satoshi, not {type(sat).__name__}")
    name = _auto_unit(abs(sat)) if unit is None else _CANONICAL.get(unit, unit)
    factor = _unit_factor(name)
    whole, rest = divmod(abs(sat), factor)
    places = len(str(factor)) - 1
    fraction = str(rest).rjust(places, "0").rstrip("0") if rest else ""
    number = f"{whole}.{fraction}" if fraction else str(whole)
    return f"{'-' if sat < 0 else ''}{number} {name}"


def fee_for(price: int, fee_bps: int) -> int:
    """``fee_bps`` basis points of ``price``, rounded up to the satoshi (docs/protocol.md)."""
    if price < 0 or not 0 <= fee_bps <= _BPS_PER_UNIT:
        raise ValueError(f"fee_for needs price >= 0 and 0 <= fee_bps <= {_BPS_PER_UNIT}")
    return -(-price * fee_bps // _BPS_PER_UNIT)  # ceiling division, integers only


def check_price(value: object, *, maximum: int = MAX_SATOSHI, name: str = "price") -> int:
    """``value`` if it is an int (not a bool) of satoshi in [0, maximum], else MoneyFormatError.

    Floats and strings are refused outright: money on the wire is an integer of satoshi.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise MoneyFormatError(
            f"{name} must be an integer number of satoshi, not {type(value).__name__}",
            field=name,
        )
    if not 0 <= value <= maximum:
        raise MoneyFormatError(
            f"{name} must be between 0 and {maximum} satoshi, got {value}", field=name
        )
    return int(value)
