"""The peer channel: streaming seal/open equals the one-shot format, keys agree only between
the two parties of one trade, and any tamper, cut or wrong party is refused."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitwrk.cas.sealing import (
    SALT_SIZE,
    WRAPPED_KEY_SIZE,
    Unsealer,
    seal,
    seal_stream,
    unwrap_key,
    wrap_key,
)
from bitwrk.daemon.peer import Channel, endpoint_signer_key, header_signer_key
from bitwrk.errors import InvalidRequest, SealError
from bitwrk.keys import PrivateKey
from bitwrk.protocol import canonical_document, sign_request
from bitwrk.wire import Message, Phase

KEY = bytes(range(32))
BUYER, SELLER, STRANGER = (PrivateKey.generate() for _ in range(3))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=40, deadline=None)
@given(plain=st.binary(max_size=1500), record_size=st.integers(16, 200),
       cuts=st.lists(st.integers(0, 4000), max_size=8))
def test_stream_equals_one_shot_and_opens_in_any_pieces(plain: bytes, record_size: int,
                                                        cuts: list[int]) -> None:
    _, sealed = seal(plain, key=KEY, record_size=record_size)
    streamed = b"".join(seal_stream(KEY, split(plain, cuts), record_size=record_size))
    assert streamed == sealed
    opener = Unsealer(KEY)
    out = b"".join(opener.feed(piece) for piece in split(sealed, cuts)) + opener.finish()
    assert out == plain


@pytest.mark.parametrize("damage", ["flip", "cut", "cut_record", "extend"])
def test_stream_tamper_is_caught(damage: str) -> None:
    _, sealed = seal(bytes(500), key=KEY, record_size=64)
    body = bytearray(sealed)
    if damage == "flip":
        body[100] ^= 1
    elif damage == "cut":
        del body[-5:]
    elif damage == "cut_record":
        del body[-(64 + 16):]  # a whole final record gone: the one before is not final
    else:
        body += b"x"
    opener = Unsealer(KEY)
    with pytest.raises(SealError):
        opener.feed(bytes(body))
        opener.finish()


def test_both_parties_derive_the_channel_and_nobody_else() -> None:
    mine = Channel.between(BUYER, SELLER.public_key, "ex", 7)
    theirs = Channel.between(SELLER, BUYER.public_key, "ex", 7)
    sealed = mine.seal("manifest", b"secret and manifest")
    assert theirs.open("manifest", sealed) == b"secret and manifest"
    for other in (Channel.between(STRANGER, BUYER.public_key, "ex", 7),  # an outsider
                  Channel.between(SELLER, BUYER.public_key, "ex", 8),  # another trade
                  Channel.between(SELLER, BUYER.public_key, "other", 7)):  # another exchange
        with pytest.raises(SealError):
            other.open("manifest", sealed)
    with pytest.raises(SealError):  # a body for one purpose is not accepted as another
        theirs.open("chunks", sealed)
    assert mine.seal("manifest", b"x") != mine.seal("manifest", b"x")  # fresh salt each time


def test_streamed_channel_body_opens_on_the_other_side() -> None:
    mine = Channel.between(BUYER, SELLER.public_key, "ex", 1)
    theirs = Channel.between(SELLER, BUYER.public_key, "ex", 1)
    pieces = [bytes([i]) * 70_000 for i in range(4)]
    body = b"".join(mine.seal_stream("chunks", pieces))
    opener = theirs.opener("chunks")
    head = SALT_SIZE + 24  # the salt and the header arrive split across small pieces
    out = b"".join(opener.feed(body[i:i + 5]) for i in range(0, head, 5))
    out += opener.feed(body[-(-head // 5) * 5:]) + opener.finish()
    assert out == b"".join(pieces)


def test_result_key_is_wrapped_for_the_buyer_only() -> None:
    wrapped = Channel.between(SELLER, BUYER.public_key, "ex", 3).wrap_result_key(KEY)
    assert len(wrapped) == 2 * WRAPPED_KEY_SIZE
    assert Channel.between(BUYER, SELLER.public_key, "ex", 3).unwrap_result_key(wrapped) == KEY
    for other in (Channel.between(STRANGER, SELLER.public_key, "ex", 3),
                  Channel.between(BUYER, SELLER.public_key, "ex", 4)):
        with pytest.raises(SealError):
            other.unwrap_result_key(wrapped)
    with pytest.raises(SealError):
        unwrap_key(b"s" * 32, b"info", wrap_key(b"s" * 32, b"info", KEY)[:-1])


def test_public_keys_come_only_from_checked_signatures() -> None:
    body = sign_request(BUYER, {"action": "manifest", "exchange": "ex", "nonce": 1, "txid": 2})
    assert header_signer_key(body) == BUYER.public_key
    document = canonical_document({"action": "endpoint", "address": SELLER.address})
    msg = Message(id=1, txid=2, time=0.0, sender=SELLER.address, role="seller",
                  action="endpoint", pre_phase=Phase.ESTABLISHING, post_phase=Phase.ESTABLISHING,
                  revision=1, document=document, signature=SELLER.sign_message(document))
    assert endpoint_signer_key([msg], SELLER.address) == SELLER.public_key
    forged = dataclasses.replace(msg, signature=STRANGER.sign_message(document))
    with pytest.raises(InvalidRequest):
        endpoint_signer_key([forged], SELLER.address)
