"""secp256k1 identity: WIF keys, P2PKH addresses and Bitcoin ``signmessage`` signatures.

A participant's id is the P2PKH address of its public key (docs/protocol.md). Signatures are
exactly what Bitcoin Core's ``signmessagewithprivkey`` produces and ``verifymessage``
accepts, so any Bitcoin tool can check them. This is the only module that imports coincurve.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import coincurve

from .errors import AddressError, KeyFormatError

__all__ = [
    "NETWORKS",
    "PrivateKey",
    "address_network",
    "base58_decode",
    "base58_encode",
    "base58check_decode",
    "base58check_encode",
    "check_address",
    "hash160",
    "is_test_network",
    "message_digest",
    "recover_signer_key",
    "verify_message",
]


@dataclass(frozen=True, slots=True)
class _Params:
    """Version bytes of one network (Bitcoin Core src/kernel/chainparams.cpp, base58Prefixes)."""

    p2pkh: int
    wif: int


_MAINNET = _Params(p2pkh=0x00, wif=0x80)
# testnet, signet and regtest share the test prefixes: P2PKH 0x6f ("m"/"n"), WIF 0xef.
_TEST = _Params(p2pkh=0x6F, wif=0xEF)

NETWORKS: tuple[str, ...] = ("mainnet", "testnet", "signet", "regtest")

# The header byte of a compact signature is 27 + recid, +4 when the key is compressed
# (Bitcoin Core src/key.cpp CKey::SignCompact; BIP 137 "Signature header byte").
_HEADER_BASE = 27
_HEADER_COMPRESSED = 4
_SIGNATURE_LEN = 65
_SIGNATURE_B64_LEN = 88  # base64 of 65 bytes, with one "=" of padding
_MESSAGE_MAGIC = b"\x18Bitcoin Signed Message:\n"  # src/common/signmessage.cpp MESSAGE_MAGIC

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
# Digit value of each ASCII code, -1 where the code is not a Base58 digit (a tuple index is
# the cheapest lookup in the loop verify_message runs for every address).
_B58_DIGITS = tuple(_B58_ALPHABET.find(chr(code)) for code in range(128))
# Longest text base58_decode looks at: a WIF is 51-52 characters, an address 26-35. A
# cap keeps garbage on the exchange's hot path from costing quadratic big-int work.
_B58_MAX_TEXT = 64
_CHECKSUM_LEN = 4
_SECRET_LEN = 32
_COMPRESSED_FLAG = b"\x01"  # WIF suffix marking a compressed public key
_ADDRESS_PAYLOAD_LEN = 21  # version byte + HASH160


def _params(network: str) -> _Params:
    if network == "mainnet":
        return _MAINNET
    if network in NETWORKS:
        return _TEST
    raise ValueError(f"unknown network {network!r}; expected one of {', '.join(NETWORKS)}")


def is_test_network(name: str) -> bool:
    """True for testnet, signet and regtest; ValueError for a name that is no network."""
    return _params(name) is _TEST


# --- hashes and Base58Check -------------------------------------------------------------


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD-160 of SHA-256: the P2PKH key hash (Bitcoin wiki "Technical background of
    version 1 Bitcoin addresses"). ripemd160 comes from hashlib's OpenSSL; a build whose
    OpenSSL 3 hides it in the legacy provider fails test_hash160_of_empty_input."""
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def base58_encode(data: bytes) -> str:
    """Bitcoin's Base58: leading zero bytes become "1" characters."""
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 58)
        digits.append(_B58_ALPHABET[digit])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    return "1" * zeros + "".join(reversed(digits))


def base58_decode(text: str) -> bytes:
    """Inverse of base58_encode; ValueError on a character outside the alphabet or on
    text over 64 characters (no Bitcoin key or address is that long)."""
    if len(text) > _B58_MAX_TEXT:
        raise ValueError("base58 text too long")
    if not text.isascii():
        raise ValueError("invalid base58 character")
    number = 0
    for code in text.encode("ascii"):
        digit = _B58_DIGITS[code]
        if digit < 0:
            raise ValueError("invalid base58 character")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def base58check_encode(payload: bytes) -> str:
    """Payload plus the first 4 bytes of its double SHA-256, in Base58."""
    return base58_encode(payload + _sha256d(payload)[:_CHECKSUM_LEN])


def base58check_decode(text: str) -> bytes:
    """The payload of a Base58Check string; ValueError on bad characters or checksum."""
    raw = base58_decode(text)
    payload, checksum = raw[:-_CHECKSUM_LEN], raw[-_CHECKSUM_LEN:]
    if len(raw) < _CHECKSUM_LEN or _sha256d(payload)[:_CHECKSUM_LEN] != checksum:
        raise ValueError("bad base58check checksum")
    return payload


# --- addresses --------------------------------------------------------------------------


def _p2pkh_address(public_key: bytes, network: str) -> str:
    return base58check_encode(bytes([_params(network).p2pkh]) + hash160(public_key))


def _address_payload(address: object) -> bytes | None:
    """Version byte + HASH160 of a P2PKH address, or None for anything else."""
    if not isinstance(address, str):
        return None
    return _decoded_address(address)


_MAX_ADDRESS_LEN = 35  # 25 bytes in Base58 are at most 35 characters


def _decoded_address(address: str) -> bytes | None:
    if not 25 <= len(address) <= _MAX_ADDRESS_LEN:
        return None  # before any decoding or caching: junk never costs memory
    try:
        return _valid_address_payload(address)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)  # only valid addresses (errors are not cached), bounded
def _valid_address_payload(address: str) -> bytes:
    payload = base58check_decode(address)
    if len(payload) != _ADDRESS_PAYLOAD_LEN or payload[0] not in (_MAINNET.p2pkh, _TEST.p2pkh):
        raise ValueError("not a P2PKH address payload")
    return payload


def address_network(address: str) -> str:
    """The network of a P2PKH address: "mainnet", or "testnet" for every test network."""
    payload = _address_payload(address)
    if payload is None:
        raise AddressError("not a valid P2PKH Base58Check address", address=str(address)[:80])
    return "mainnet" if payload[0] == _MAINNET.p2pkh else "testnet"


def check_address(address: str, network: str) -> None:
    """AddressError unless ``address`` is a valid P2PKH address of ``network``."""
    if _params(address_network(address)) is not _params(network):
        raise AddressError(f"address is not a {network} address", address=address)


# --- signmessage ------------------------------------------------------------------------


def _compact_size(n: int) -> bytes:
    """Bitcoin's CompactSize length prefix (src/serialize.h WriteCompactSize)."""
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFF_FFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")


def message_digest(text: str) -> bytes:
    """The 32 bytes signmessage signs (src/common/signmessage.cpp MessageHash)."""
    data = text.encode("utf-8")
    return _sha256d(_MESSAGE_MAGIC + _compact_size(len(data)) + data)


def _decode_signature(signature: object) -> bytes | None:
    if not isinstance(signature, str) or len(signature) != _SIGNATURE_B64_LEN:
        return None
    try:
        raw = base64.b64decode(signature, validate=True)
    except ValueError:  # binascii.Error and non-ASCII text are both ValueErrors
        return None
    if len(raw) != _SIGNATURE_LEN or not _HEADER_BASE <= raw[0] < _HEADER_BASE + 8:
        return None
    return raw


def _recover_public_key(raw: bytes, text: str) -> bytes | None:
    """The serialized key that made ``raw`` over ``text``, or None.

    A successful ECDSA public-key recovery (SEC 1 v2 §4.1.6) yields a key for which the
    signature verifies, so no separate verify is needed; Core's CPubKey::RecoverCompact
    does the same. High-S signatures are accepted: the original BitWrk never normalised S.
    """
    header = raw[0] - _HEADER_BASE
    recid, compressed = header & 3, header >= _HEADER_COMPRESSED
    try:
        digest = message_digest(text)
        # coincurve wants r || s || recid, Bitcoin puts the header first.
        key = coincurve.PublicKey.from_signature_and_message(
            raw[1:] + bytes([recid]), digest, hasher=None
        )
    except ValueError:  # failed recovery, unparsable r/s, or text with lone surrogates
        return None
    serialized: bytes = key.format(compressed=compressed)
    return serialized


def verify_message(address: str, signature: str, text: str) -> bool:
    """True iff ``signature`` is a signmessage signature of ``text`` by ``address``'s key.

    Never raises on garbage. The cheap checks (signature shape, address checksum) run
    before the elliptic-curve recovery, which is the only expensive step.
    """
    raw = _decode_signature(signature)
    if raw is None:
        return False
    payload = _address_payload(address)
    if payload is None or not isinstance(text, str):
        return False
    public_key = _recover_public_key(raw, text)
    return public_key is not None and hash160(public_key) == payload[1:]


def recover_signer_key(address: str, signature: str, text: str) -> bytes | None:
    """The SEC 1 public key behind ``address`` that signed ``text``, or None.

    A P2PKH address names only a hash of the key; peers that need the key itself (for
    ECDH) recover it from a signature they already check, so no key is ever taken on trust.
    """
    raw = _decode_signature(signature)
    payload = _address_payload(address)
    if raw is None or payload is None or not isinstance(text, str):
        return None
    public_key = _recover_public_key(raw, text)
    if public_key is None or hash160(public_key) != payload[1:]:
        return None
    return public_key


# --- private keys -----------------------------------------------------------------------


class PrivateKey:
    """A secp256k1 secret with the network and public-key form its WIF names.

    Equality and hashing go by the WIF serialization. Neither ``repr`` nor ``str`` shows
    the secret; ``to_wif`` and ``secret_bytes`` are the only ways out.
    """

    __slots__ = ("_address", "_compressed", "_key", "_network", "_public_key")

    def __init__(self, secret: bytes, *, compressed: bool = True, network: str = "testnet") -> None:
        _params(network)
        if not isinstance(secret, bytes) or len(secret) != _SECRET_LEN:
            raise KeyFormatError("a private key is 32 bytes")
        try:
            self._key = coincurve.PrivateKey(secret)
        except ValueError:
            raise KeyFormatError("private key out of range for secp256k1") from None
        self._compressed = compressed
        self._network = network
        self._public_key: bytes = self._key.public_key.format(compressed=compressed)
        self._address = _p2pkh_address(self._public_key, network)

    @classmethod
    def generate(cls, network: str = "testnet") -> PrivateKey:
        """A fresh compressed key from the OS's CSPRNG (``secrets``)."""
        while True:
            try:
                return cls(secrets.token_bytes(_SECRET_LEN), network=network)
            except KeyFormatError:  # zero or >= n: about 2**-128, draw again
                continue

    @classmethod
    def from_wif(cls, wif: str) -> PrivateKey:
        """Parse Wallet Import Format (0x80 mainnet / 0xef test, optional 0x01 suffix).

        Errors never quote the input: it is a secret.
        """
        payload = _wif_payload(wif)
        prefix, secret, suffix = payload[0], payload[1:33], payload[33:]
        if prefix not in (_MAINNET.wif, _TEST.wif):
            raise KeyFormatError("WIF has an unknown network prefix")
        if suffix not in (b"", _COMPRESSED_FLAG):
            raise KeyFormatError("WIF has a bad compression flag")
        network = "mainnet" if prefix == _MAINNET.wif else "testnet"
        return cls(secret, compressed=suffix == _COMPRESSED_FLAG, network=network)

    def to_wif(self) -> str:
        flag = _COMPRESSED_FLAG if self._compressed else b""
        return base58check_encode(bytes([_params(self._network).wif]) + self.secret_bytes() + flag)

    def secret_bytes(self) -> bytes:
        secret: bytes = self._key.secret
        return secret

    @property
    def network(self) -> str:
        return self._network

    @property
    def compressed(self) -> bool:
        return self._compressed

    @property
    def public_key(self) -> bytes:
        """SEC 1 serialization: 33 bytes compressed, 65 uncompressed."""
        return self._public_key

    @property
    def address(self) -> str:
        """P2PKH address of ``public_key`` on this key's network (computed once)."""
        return self._address

    def sign_message(self, text: str) -> str:
        """Bitcoin Core ``signmessage``: base64 of header || r || s, deterministic (RFC 6979)."""
        # libsecp256k1's default nonce function is RFC 6979 with no extra data, as in Core.
        rsv = self._key.sign_recoverable(message_digest(text), hasher=None)
        header = _HEADER_BASE + rsv[64] + (_HEADER_COMPRESSED if self._compressed else 0)
        return base64.b64encode(bytes([header]) + rsv[:64]).decode("ascii")

    def shared_secret(self, public_key: bytes) -> bytes:
        """ECDH with a peer's SEC 1 public key: SHA-256 of the compressed shared point
        (libsecp256k1's default ``secp256k1_ecdh`` hash), the same on both sides."""
        try:
            peer = coincurve.PublicKey(public_key)
        except ValueError:
            raise KeyFormatError("not a secp256k1 public key") from None
        shared: bytes = self._key.ecdh(peer.format())
        return shared

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKey):
            return NotImplemented
        return hmac.compare_digest(self.to_wif(), other.to_wif())

    def __hash__(self) -> int:
        return hash(self.to_wif())

    def __repr__(self) -> str:
        return f"PrivateKey(address={self._address!r})"

    __str__ = __repr__


def _wif_payload(wif: object) -> bytes:
    if not isinstance(wif, str):
        raise KeyFormatError("a WIF key is a string")
    try:
        payload = base58check_decode(wif)
    except ValueError:
        raise KeyFormatError("not a valid WIF key (bad characters or checksum)") from None
    if len(payload) not in (1 + _SECRET_LEN, 1 + _SECRET_LEN + 1):
        raise KeyFormatError("WIF payload has the wrong length")
    return payload
