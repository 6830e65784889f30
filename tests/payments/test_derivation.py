"""Address derivation against the published BIP32 and BIP84 vectors; destination checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from embit import bip32
from embit.networks import NETWORKS

from bitwrk.errors import AddressError
from service.payments import deposit_address
from service.payments.addresses import payout_script
from service.payments.derivation import parse_xpub
from service.payments.errors import XpubError
from tests.payments.conftest import XPUB

DATA = Path(__file__).parent / "data"
BIP32 = json.loads((DATA / "bip32_vectors.json").read_text())
BIP84 = json.loads((DATA / "bip84_vectors.json").read_text())


@pytest.mark.parametrize("vector", BIP32["vectors"], ids=lambda v: v["seed"][:8])
def test_bip32_vectors(vector: dict[str, Any]) -> None:
    root = bip32.HDKey.from_seed(bytes.fromhex(vector["seed"]))
    parent_pub = None
    for step in vector["chains"]:
        key = root.derive(step["path"]) if step["path"] != "m" else root
        assert key.to_base58() == step["xprv"]
        assert key.to_public().to_base58() == step["xpub"]
        last = step["path"].split("/")[-1]
        if parent_pub is not None and not last.endswith("h"):
            # public-only derivation, what the exchange does, reaches the same child
            child = parse_xpub(parent_pub).key.derive([int(last)])
            assert child.to_base58() == step["xpub"]
        parent_pub = step["xpub"]


def test_bip84_vectors() -> None:
    zpub = BIP84["account_zpub"]
    assert bip32.HDKey.from_string(BIP84["account_xprv"]).to_public().to_base58(
        NETWORKS["main"]["zpub"]) == zpub
    for item in BIP84["addresses"]:
        key = parse_xpub(zpub).key.derive([item["change"], item["index"]])
        assert key.sec().hex() == item["pubkey"]
        if item["change"] == 0:
            assert deposit_address(zpub, item["index"]) == item["address"]
            assert deposit_address(zpub, item["index"], network="mainnet") == item["address"]


def test_xpub_forms_and_networks() -> None:
    tpub = parse_xpub(XPUB).key.to_base58(NETWORKS["test"]["xpub"])
    first = deposit_address(XPUB, 0, network="regtest")
    assert first.startswith("bcrt1q") and deposit_address(tpub, 0, network="regtest") == first
    assert deposit_address(tpub, 0).startswith("tb1q")
    assert deposit_address(XPUB, 1, network="signet") != deposit_address(XPUB, 0,
                                                                          network="signet")
    with pytest.raises(XpubError):
        deposit_address(XPUB, 0, network="mainnet")
    with pytest.raises(XpubError):
        deposit_address(BIP84["account_zpub"], 0, network="testnet")
    with pytest.raises(ValueError):
        deposit_address(XPUB, 2**31)


@pytest.mark.parametrize("bad", [
    "", "xpub", "tpubDC" + "1" * 100, BIP84["account_xprv"], BIP84["rootnode"],
    "[zz/84h]" + BIP84["account_zpub"], "[d34db33f/84q]" + BIP84["account_zpub"],
])
def test_bad_keys_are_refused(bad: str) -> None:
    with pytest.raises(XpubError):
        parse_xpub(bad)


GOOD = {
    "mainnet": ["bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
                "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
                "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"],
    "testnet": ["tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
                "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"],
    "regtest": ["bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"],
}


def test_payout_addresses_for_each_network() -> None:
    for network, addresses in GOOD.items():
        for address in addresses:
            assert payout_script(address, network).data
            others = [n for n in GOOD if n != network and not (
                {n, network} == {"testnet", "regtest"} and not address.startswith(("tb", "bc")))]
            for other in others:
                with pytest.raises(AddressError):
                    payout_script(address, other)


@pytest.mark.parametrize("bad", [
    "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyv",  # checksum
    "BC1QCR8TE4KR609GCAWUTMRZA0J4XV80JY8Z306FYu",  # mixed case
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", "hello world", 12345, None, "bc1" + "q" * 100,
    "bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs",  # witness v2: not supported for payouts
])
def test_malformed_addresses(bad: Any) -> None:
    with pytest.raises(AddressError):
        payout_script(bad, "mainnet")
