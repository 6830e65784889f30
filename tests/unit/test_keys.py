"""bitwrk.keys against Bitcoin Core, BitWrk and library vectors (tests/data/*.json)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitwrk.errors import AddressError, KeyFormatError
from bitwrk.keys import (
    NETWORKS,
    PrivateKey,
    address_network,
    base58_decode,
    base58_encode,
    base58check_decode,
    base58check_encode,
    check_address,
    hash160,
    is_test_network,
    message_digest,
    verify_message,
)

DATA = Path(__file__).resolve().parent.parent / "data"
SIGN = json.loads((DATA / "signmessage_vectors.json").read_text(encoding="utf-8"))
KEYS = json.loads((DATA / "key_vectors.json").read_text(encoding="utf-8"))

CORE_WIF = "cUeKHd5orzT3mz8P9pxyREHfsWtVfgsfDjiZZBcjUBAaGk1BTj7N"
UNCOMPRESSED_WIF = "5KJvsngHeMpm884wtkJNzQGaCErckhHJBGFsvd3VyK5qMZXj3hS"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 order


def _key_of(vector: dict[str, Any]) -> PrivateKey:
    if "wif" in vector:
        return PrivateKey.from_wif(vector["wif"])
    secret = bytes.fromhex(vector["secret"])
    return PrivateKey(secret, compressed=vector["compressed"], network=vector["network"])


def _ids(vectors: list[dict[str, Any]]) -> list[str]:
    return [f"{v['source']}:{v['message'][:20]}" for v in vectors]


# --- signmessage ------------------------------------------------------------------------


@pytest.mark.parametrize("vector", SIGN["sign"], ids=_ids(SIGN["sign"]))
def test_sign_message_reproduces_published_signature(vector: dict[str, Any]) -> None:
    key = _key_of(vector)
    assert key.sign_message(vector["message"]) == vector["signature"]
    if "address" in vector:
        assert key.address == vector["address"]


@pytest.mark.parametrize("vector", SIGN["digests"], ids=lambda v: v["message"])
def test_message_digest_matches_published_hash(vector: dict[str, Any]) -> None:
    assert message_digest(vector["message"]).hex() == vector["digest"]


def test_message_digest_uses_compact_size_lengths() -> None:
    # CompactSize switches to 0xfd + uint16 at 253 bytes and 0xfe + uint32 at 65536.
    magic = b"\x18Bitcoin Signed Message:\n"
    for size, prefix in [(252, b"\xfc"), (253, b"\xfd\xfd\x00"), (65536, b"\xfe\x00\x00\x01\x00")]:
        text = "a" * size
        inner = hashlib.sha256(magic + prefix + text.encode()).digest()
        assert message_digest(text) == hashlib.sha256(inner).digest()


def test_message_digest_counts_utf8_bytes_not_characters() -> None:
    text = "µ" * 200  # 400 bytes: needs the 3-byte length form
    inner = hashlib.sha256(b"\x18Bitcoin Signed Message:\n\xfd\x90\x01" + text.encode()).digest()
    assert message_digest(text) == hashlib.sha256(inner).digest()


VERIFY_OK = SIGN["verify_ok"] + [
    {k: v[k] for k in ("source", "message", "signature")} | {"address": _key_of(v).address}
    for v in SIGN["sign"]
]


@pytest.mark.parametrize("vector", VERIFY_OK, ids=_ids(VERIFY_OK))
def test_published_signatures_verify(vector: dict[str, Any]) -> None:
    assert verify_message(vector["address"], vector["signature"], vector["message"]) is True


@pytest.mark.parametrize(
    "vector", SIGN["verify_bad"], ids=[f"{v['source']}:{v['why']}" for v in SIGN["verify_bad"]]
)
def test_bad_signatures_do_not_verify(vector: dict[str, Any]) -> None:
    assert verify_message(vector["address"], vector["signature"], vector["message"]) is False


def test_signatures_are_deterministic_and_differ_per_message() -> None:
    key = PrivateKey.from_wif(CORE_WIF)
    assert key.sign_message("a") == key.sign_message("a")
    assert key.sign_message("a") != key.sign_message("b")


@pytest.mark.parametrize(
    ("wif", "headers"), [(CORE_WIF, range(31, 35)), (UNCOMPRESSED_WIF, range(27, 31))]
)
def test_header_byte_marks_compression(wif: str, headers: range) -> None:
    key = PrivateKey.from_wif(wif)
    for text in ("x", "y", "z", "w"):
        signature = key.sign_message(text)
        assert base64.b64decode(signature)[0] in headers
        assert verify_message(key.address, signature, text)


def test_compressed_and_uncompressed_forms_are_different_identities() -> None:
    loose = PrivateKey.from_wif(UNCOMPRESSED_WIF)
    tight = PrivateKey(loose.secret_bytes(), compressed=True, network="mainnet")
    signature = tight.sign_message("m")
    assert verify_message(tight.address, signature, "m")
    assert not verify_message(loose.address, signature, "m")


def test_signature_is_tied_to_key_hash_not_to_network() -> None:
    # verify_message checks the key hash and that the address is P2PKH; which network an
    # address belongs to is check_address's question (the exchange asks it separately).
    key = PrivateKey.from_wif(CORE_WIF)
    signature = key.sign_message("m")
    h = hash160(key.public_key)
    mainnet = base58check_encode(b"\x00" + h)
    p2sh = base58check_encode(b"\x05" + h)
    assert verify_message(mainnet, signature, "m")
    assert not verify_message(p2sh, signature, "m")


def test_high_s_signature_still_verifies() -> None:
    # The original BitWrk never normalised S; (r, n - s) with the flipped recid is valid.
    key = PrivateKey.from_wif(CORE_WIF)
    raw = base64.b64decode(key.sign_message("m"))
    s = int.from_bytes(raw[33:], "big")
    header = 27 + ((raw[0] - 27) ^ 1)  # the other y parity of R
    flipped = bytes([header]) + raw[1:33] + (N - s).to_bytes(32, "big")
    assert verify_message(key.address, base64.b64encode(flipped).decode(), "m")


GOOD_SIG = SIGN["sign"][1]["signature"]
GOOD_ADDR = SIGN["sign"][1]["address"]
GOOD_MSG = SIGN["sign"][1]["message"]


@pytest.mark.parametrize(
    ("address", "signature", "text"),
    [
        (GOOD_ADDR, GOOD_SIG[:-4], GOOD_MSG),  # too short
        (GOOD_ADDR, GOOD_SIG + "AAAA", GOOD_MSG),  # too long
        (GOOD_ADDR, base64.b64encode(bytes([26]) + bytes(64)).decode(), GOOD_MSG),  # header 26
        (
            GOOD_ADDR,
            base64.b64encode(bytes([35]) + base64.b64decode(GOOD_SIG)[1:]).decode(),
            GOOD_MSG,
        ),
        (GOOD_ADDR, "é" * 88, GOOD_MSG),  # non-ASCII
        (GOOD_ADDR, "!" * 88, GOOD_MSG),  # not base64
        (GOOD_ADDR, "=" * 88, GOOD_MSG),
        (GOOD_ADDR, "", GOOD_MSG),
        (GOOD_ADDR, base64.b64encode(b"\x1f" + b"\xff" * 64).decode(), GOOD_MSG),  # r, s >= n
        (GOOD_ADDR, GOOD_SIG, "\ud800"),  # lone surrogate: not encodable
        ("", GOOD_SIG, GOOD_MSG),
        ("0" * 34, GOOD_SIG, GOOD_MSG),  # "0" is not base58
        ("1" * 10_000, GOOD_SIG, GOOD_MSG),
        (GOOD_ADDR[:-1] + "C", GOOD_SIG, GOOD_MSG),  # bad checksum
        (None, GOOD_SIG, GOOD_MSG),
        (GOOD_ADDR, None, GOOD_MSG),
        (GOOD_ADDR, GOOD_SIG.encode(), GOOD_MSG),
        (GOOD_ADDR, GOOD_SIG, None),
        (GOOD_ADDR, GOOD_SIG, GOOD_MSG.encode()),
    ],
)
def test_verify_returns_false_on_garbage(address: Any, signature: Any, text: Any) -> None:
    assert verify_message(address, signature, text) is False


@settings(max_examples=300)
@given(st.text(max_size=40), st.text(max_size=100), st.text(max_size=20))
def test_verify_never_raises(address: str, signature: str, text: str) -> None:
    assert verify_message(address, signature, text) is False


@settings(max_examples=300)
@given(st.binary(min_size=65, max_size=65), st.text(max_size=20))
def test_verify_never_raises_on_random_65_byte_signatures(raw: bytes, text: str) -> None:
    assert verify_message(GOOD_ADDR, base64.b64encode(raw).decode(), text) is False


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=300))
def test_sign_verify_round_trip(text: str) -> None:
    key = PrivateKey.from_wif(CORE_WIF)
    signature = key.sign_message(text)
    assert verify_message(key.address, signature, text)
    assert not verify_message(key.address, signature, text + "x")


# --- WIF and keys -----------------------------------------------------------------------


@pytest.mark.parametrize("vector", KEYS["wif_address"], ids=lambda v: v["address"])
def test_wif_gives_published_address(vector: dict[str, Any]) -> None:
    key = PrivateKey.from_wif(vector["wif"])
    assert key.address == vector["address"]
    assert key.compressed is vector["compressed"]
    assert key.network == vector["network"]
    assert len(key.public_key) == (33 if vector["compressed"] else 65)
    assert key.to_wif() == vector["wif"]


@pytest.mark.parametrize("vector", KEYS["wif_secret"], ids=lambda v: v["wif"][:8])
def test_wif_decodes_to_published_secret(vector: dict[str, Any]) -> None:
    key = PrivateKey.from_wif(vector["wif"])
    assert key.secret_bytes().hex() == vector["secret"]
    assert key.compressed is vector["compressed"]
    assert key.network == vector["network"]
    assert _key_of(vector).to_wif() == vector["wif"]


@pytest.mark.parametrize("network", NETWORKS)
def test_generate_round_trips_through_wif(network: str) -> None:
    key = PrivateKey.generate(network)
    assert key.network == network
    assert key.compressed and len(key.public_key) == 33
    assert key.address[0] in ("1" if network == "mainnet" else "mn")
    check_address(key.address, network)
    again = PrivateKey.from_wif(key.to_wif())
    assert again == key and hash(again) == hash(key)
    assert again.address == key.address
    assert again.network == ("mainnet" if network == "mainnet" else "testnet")


def test_generated_keys_differ() -> None:
    assert PrivateKey.generate() != PrivateKey.generate()


def test_regtest_and_testnet_keys_share_a_serialization() -> None:
    secret = PrivateKey.from_wif(CORE_WIF).secret_bytes()
    regtest = PrivateKey(secret, network="regtest")
    assert regtest.network == "regtest"
    assert regtest == PrivateKey.from_wif(CORE_WIF)
    assert regtest.to_wif() == CORE_WIF


def test_key_equality_is_by_serialization() -> None:
    key = PrivateKey.from_wif(CORE_WIF)
    uncompressed = PrivateKey(key.secret_bytes(), compressed=False, network="testnet")
    mainnet = PrivateKey(key.secret_bytes(), network="mainnet")
    assert key != uncompressed and key != mainnet
    assert key != CORE_WIF
    assert len({key, PrivateKey.from_wif(CORE_WIF), mainnet}) == 2


def test_repr_and_str_hide_the_secret() -> None:
    key = PrivateKey.from_wif(CORE_WIF)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert CORE_WIF not in text
        assert key.secret_bytes().hex() not in text
        assert key.address in text
    assert repr(key) == f"PrivateKey(address='{key.address}')"


def _wif(payload: bytes) -> str:
    return base58check_encode(payload)


SECRET = bytes.fromhex("d6bca256b5abc5602ec2e1c121a08b0da2556587430bcf7e1898af2224885203")


@pytest.mark.parametrize(
    "wif",
    [
        CORE_WIF[:-1] + ("M" if CORE_WIF[-1] != "M" else "N"),  # checksum
        CORE_WIF[:-2],
        "",
        "0OIl" * 13,  # characters outside base58
        _wif(b"\x80" + SECRET[:31]),  # short
        _wif(b"\x80" + SECRET + b"\x01\x01"),  # long
        _wif(b"\x81" + SECRET),  # unknown prefix
        _wif(b"\x00" + SECRET + b"\x01"),  # address prefix
        _wif(b"\x80" + SECRET + b"\x02"),  # bad compression flag
        _wif(b"\x80" + bytes(32)),  # zero secret
        _wif(b"\xef" + N.to_bytes(32, "big") + b"\x01"),  # secret == n
        _wif(b"\xef" + b"\xff" * 32),  # secret > n
    ],
)
def test_bad_wif_is_rejected_without_echoing_it(wif: str) -> None:
    with pytest.raises(KeyFormatError) as info:
        PrivateKey.from_wif(wif)
    if wif:
        assert wif not in str(info.value) and wif not in json.dumps(info.value.to_json())


def test_non_string_wif_is_rejected() -> None:
    with pytest.raises(KeyFormatError):
        PrivateKey.from_wif(b"5KJvs")  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", [b"", bytes(31), bytes(33), bytes(32), b"\xff" * 32])
def test_bad_secret_bytes_are_rejected(secret: bytes) -> None:
    with pytest.raises(KeyFormatError):
        PrivateKey(secret)


def test_unknown_network_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown network"):
        PrivateKey.generate("moonnet")
    with pytest.raises(ValueError, match="unknown network"):
        is_test_network("moonnet")


def test_network_names() -> None:
    assert NETWORKS == ("mainnet", "testnet", "signet", "regtest")
    assert [is_test_network(n) for n in NETWORKS] == [False, True, True, True]


# --- addresses and Base58 ---------------------------------------------------------------


@pytest.mark.parametrize("vector", KEYS["addresses"], ids=lambda v: v["address"])
def test_address_network_of_published_addresses(vector: dict[str, Any]) -> None:
    assert base58check_decode(vector["address"]).hex() == vector["payload"]
    if vector["network"] is None:  # P2SH: valid Base58Check, not an identity
        with pytest.raises(AddressError):
            address_network(vector["address"])
    else:
        assert address_network(vector["address"]) == vector["network"]


@pytest.mark.parametrize(
    ("network", "accepted"),
    [
        ("mainnet", "1AGNa15ZQXAZUgFiqJ2i7Z2DPU2J6hW62i"),
        *[(n, "mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs") for n in ("testnet", "signet", "regtest")],
    ],
)
def test_check_address_accepts_own_network_only(network: str, accepted: str) -> None:
    check_address(accepted, network)
    other = {"1AGNa15ZQXAZUgFiqJ2i7Z2DPU2J6hW62i", "mo9ncXisMeAoXwqcV5EWuyncbmCcQN4rVs"} - {
        accepted
    }
    with pytest.raises(AddressError):
        check_address(other.pop(), network)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "1",
        "1AGNa15ZQXAZUgFiqJ2i7Z2DPU2J6hW62j",
        "0AGNa15ZQXAZUgFiqJ2i7Z2DPU2J6hW62i",
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
        base58check_encode(b"\x00" + bytes(19)),
        "1" * 100,
    ],
)
def test_invalid_addresses_raise_address_error(address: str) -> None:
    with pytest.raises(AddressError):
        address_network(address)
    with pytest.raises(AddressError):
        check_address(address, "mainnet")


@pytest.mark.parametrize(("hex_data", "text"), KEYS["base58"], ids=lambda x: str(x)[:12])
def test_base58_vectors(hex_data: str, text: str) -> None:
    assert base58_encode(bytes.fromhex(hex_data)) == text
    assert base58_decode(text) == bytes.fromhex(hex_data)


@given(st.binary(max_size=40))
def test_base58check_round_trip(data: bytes) -> None:
    assert base58check_decode(base58check_encode(data)) == data


def test_base58check_rejects_bad_input() -> None:
    for text in ("", "1", "111", "2g", "0OIl", base58_encode(b"\x00\x01\x02\x03")):
        with pytest.raises(ValueError):
            base58check_decode(text)


def test_hash160_of_empty_input() -> None:
    # RIPEMD-160(SHA-256("")), the widely quoted HASH160 of empty input.
    assert hash160(b"").hex() == "b472a266d0bd89c13706a4132ccfb16f7c3b9fcb"
