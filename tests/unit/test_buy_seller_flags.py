"""``python -m bitwrk.buy``'s seller flags and the extension's settings become the
mandate's signed seller terms; bad values stop before anything is bought."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from bitwrk.buy import _parser, describe_terms, seller_terms
from bitwrk.errors import AddressError
from bitwrk.keys import PrivateKey
from bitwrk.protocol import SellerTerms
from tests.extension.test_trusted_and_lan import extension

SELLERS = [PrivateKey.generate("regtest").address for _ in range(2)]


def parse(*flags: str) -> argparse.Namespace:
    return _parser().parse_args(["scene.blend", "--exchange", "http://x", "--max-price", "9",
                                 "--out", "o", *flags])


def test_flags_become_the_mandates_terms() -> None:
    args = parse("--min-seller-finished", "3", "--max-seller-lost-pct", "10",
                 "--exclude-seller", SELLERS[0], "--exclude-seller", SELLERS[1])
    assert seller_terms(args, "regtest") == SellerTerms(3, 10, frozenset(SELLERS))
    assert seller_terms(parse(), "regtest") == SellerTerms()  # default: no terms
    assert describe_terms(seller_terms(args, "regtest")) == (
        ">= 3 finished trades, <= 10 % of decided trades lost in dispute, not the 2 excluded")


@pytest.mark.parametrize("flags", [
    ("--min-seller-finished", "-1"), ("--min-seller-finished", "1000001"),
    ("--min-seller-finished", "many"), ("--max-seller-lost-pct", "101"),
    ("--exclude-seller", "not-an-address"),
])
def test_out_of_range_flags_are_usage_errors(flags: tuple[str, ...],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse(*flags)
    assert exit_.value.code == 2
    assert flags[0] in capsys.readouterr().err


def test_an_excluded_seller_of_another_network_is_refused_before_bidding() -> None:
    with pytest.raises(AddressError, match="--exclude-seller"):
        seller_terms(parse("--exclude-seller", SELLERS[0]), "mainnet")


def test_the_extensions_requests_carry_the_terms_into_the_mandate(tmp_path: Path) -> None:
    session, animation = extension("session"), extension("animation")
    common = {"blend": Path("x.blend"), "info": {}, "exchange_url": "u", "max_price": 10,
              "budget": 0, "tiles": 0, "min_seller_finished": 2, "exclude_sellers": (SELLERS[0],)}
    plan = SimpleNamespace(article="net.bitwrk/blender/5.0/512M")
    for request in (session.RenderRequest(frame=1, **common),
                    animation.AnimationRequest(outputs={1: "f"}, **common)):
        job = session.start_job(None, request, plan, [("u0", b"{}")], tmp_path)  # no LAN hub
        # the extension's own copy of bitwrk: compare the signed fields, not the classes
        assert job.mandate.sellers.to_fields() == {"min_finished": 2, "exclude": SELLERS[0]}
    plain = session.RenderRequest(frame=1, **{**common, "min_seller_finished": 0,
                                              "exclude_sellers": ()})
    assert session.seller_terms(plain).to_fields() == {}
    with pytest.raises(Exception, match="P2PKH"):  # a typo in the field: refused before buying
        session.seller_terms(SimpleNamespace(exclude_sellers=("nope",)))
