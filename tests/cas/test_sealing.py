"""Sealed results: AEAD round trips; any tamper, cut, reorder or wrong key is refused."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitwrk.cas.sealing import KEY_SIZE, TAG_SIZE, ciphertext_hash, seal, unseal
from bitwrk.errors import SealError
from tests.cas.conftest import data_of

RS = 64  # small records, so a few hundred bytes make many records
HEADER = 8


def records(ciphertext: bytes) -> list[bytes]:
    body = ciphertext[HEADER:]
    stride = RS + TAG_SIZE
    return [body[i:i + stride] for i in range(0, len(body), stride)]


@pytest.mark.parametrize("size", [0, 1, RS - 1, RS, RS + 1, 3 * RS, 3 * RS + 5])
def test_round_trip_at_record_edges(size: int) -> None:
    plain = data_of(size)
    key, sealed = seal(plain, record_size=RS)
    assert len(key) == KEY_SIZE
    assert unseal(key, sealed) == plain
    assert len(sealed) == HEADER + size + TAG_SIZE * max(1, -(-size // RS))


@settings(max_examples=30, deadline=None)
@given(plain=st.binary(max_size=2000), record_size=st.integers(16, 300))
def test_round_trip_property(plain: bytes, record_size: int) -> None:
    key, sealed = seal(plain, record_size=record_size)
    assert unseal(key, sealed) == plain


def test_default_records_round_trip_a_large_result() -> None:
    plain = data_of(1_000_000)
    key, sealed = seal(plain)
    assert unseal(key, sealed) == plain


def test_every_seal_has_a_fresh_key() -> None:
    (k1, c1), (k2, c2) = seal(b"same", record_size=RS), seal(b"same", record_size=RS)
    assert k1 != k2 and c1 != c2


def test_wrong_key_is_refused() -> None:
    _, sealed = seal(b"result", record_size=RS)
    with pytest.raises(SealError, match="does not authenticate"):
        unseal(bytes(KEY_SIZE), sealed)


def test_short_key_is_refused() -> None:
    key, sealed = seal(b"result", record_size=RS)
    with pytest.raises(SealError, match="32 bytes"):
        unseal(key[:16], sealed)


def test_every_flipped_byte_is_caught() -> None:
    key, sealed = seal(data_of(3 * RS + 7), record_size=RS)
    for at in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[at] ^= 0x01
        with pytest.raises(SealError):
            unseal(key, bytes(tampered))


def test_every_truncation_is_caught() -> None:
    key, sealed = seal(data_of(3 * RS), record_size=RS)
    for cut in range(len(sealed)):
        with pytest.raises(SealError):
            unseal(key, sealed[:cut])


def test_dropping_the_final_record_is_caught() -> None:
    key, sealed = seal(data_of(3 * RS + 10), record_size=RS)
    with pytest.raises(SealError, match="does not authenticate"):
        unseal(key, sealed[:HEADER] + b"".join(records(sealed)[:-1]))


def test_reordered_records_are_caught() -> None:
    key, sealed = seal(data_of(3 * RS), record_size=RS)
    first, second, third = records(sealed)
    with pytest.raises(SealError):
        unseal(key, sealed[:HEADER] + second + first + third)


def test_appended_bytes_are_caught() -> None:
    key, sealed = seal(data_of(2 * RS), record_size=RS)
    for extra in (b"\x00", records(sealed)[0]):
        with pytest.raises(SealError):
            unseal(key, sealed + extra)


def test_bad_header_is_refused() -> None:
    key, sealed = seal(b"x", record_size=RS)
    with pytest.raises(SealError, match="magic"):
        unseal(key, b"BWR\x02" + sealed[4:])
    with pytest.raises(SealError, match="record size"):
        unseal(key, sealed[:4] + struct.pack(">I", 1 << 30) + sealed[HEADER:])
    with pytest.raises(SealError, match="header"):
        unseal(key, b"BWR")


def test_ciphertext_hash_is_sha256_hex() -> None:
    _, sealed = seal(b"tile", record_size=RS)
    assert ciphertext_hash(sealed) == hashlib.sha256(sealed).hexdigest()


def test_record_size_is_bounded() -> None:
    with pytest.raises(ValueError):
        seal(b"x", record_size=8)
