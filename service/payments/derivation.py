"""Deposit and change addresses from the operator's account-level extended public key.

BIP32 (https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki) child derivation and
BIP84 paths ``<account>/0/i`` (receive) and ``<account>/1/i`` (change), P2WPKH (BIP141) in
bech32 (BIP173), all through embit. The key may carry its origin as in output descriptors,
``[d34db33f/84h/1h/0h]tpub...``, so exported PSBTs name the full path for offline signers.
``xpub``/``tpub`` and the SLIP-132 ``zpub``/``vpub`` forms are accepted; private keys never.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from embit import bip32, script
from embit.descriptor.checksum import add_checksum
from embit.networks import NETWORKS

from .errors import XpubError

RECEIVE, CHANGE = 0, 1
MAX_INDEX = 2**31 - 1  # non-hardened children only: they derive from a public key
_EMBIT_NET = {"mainnet": "main", "testnet": "test", "signet": "signet", "regtest": "regtest"}


def _versions(net: str, kind: str) -> set[bytes]:
    params = NETWORKS[net]
    return {params[p + kind] for p in ("x", "y", "z", "Y", "Z")}


_PUBLIC = {"main": _versions("main", "pub"), "test": _versions("test", "pub")}
_PRIVATE = _versions("main", "prv") | _versions("test", "prv")


@dataclass(frozen=True)
class AccountKey:
    """A parsed account xpub with the master fingerprint and path that lead to it."""

    key: Any  # embit.bip32.HDKey (public)
    fingerprint: bytes
    origin: tuple[int, ...]
    mainnet: bool

    def child(self, chain: int, index: int) -> Any:
        if chain not in (RECEIVE, CHANGE) or not 0 <= index <= MAX_INDEX:
            raise ValueError(f"no such child {chain}/{index}")
        return self.key.derive([chain, index])

    def path(self, chain: int, index: int) -> list[int]:
        return [*self.origin, chain, index]

    def descriptor(self, chain: int) -> str:
        """``wpkh([fp/origin]tpub.../chain/*)#checksum`` for Bitcoin Core's importdescriptors
        (Core only reads xpub/tpub version bytes, so zpub/vpub are re-encoded)."""
        net = "main" if self.mainnet else "test"
        origin = "/".join([self.fingerprint.hex(), *(_step(i) for i in self.origin)])
        xpub = self.key.to_base58(NETWORKS[net]["xpub"])
        return add_checksum(f"wpkh([{origin}]{xpub}/{chain}/*)")  # type: ignore[no-any-return]


def _step(index: int) -> str:
    return f"{index - 2**31}h" if index >= 2**31 else str(index)


def _parse_origin(text: str) -> tuple[bytes, tuple[int, ...], str]:
    head, sep, body = text[1:].partition("]")
    parts = head.split("/")
    if not sep or len(parts[0]) != 8:
        raise XpubError("key origin must look like [d34db33f/84h/1h/0h]")
    try:
        fingerprint = bytes.fromhex(parts[0])
        path = tuple(bip32.parse_path("m/" + "/".join(parts[1:]))) if parts[1:] else ()
    except (ValueError, TypeError) as exc:
        raise XpubError(f"bad key origin: {exc}") from exc
    return fingerprint, path, body


def parse_xpub(text: str) -> AccountKey:
    """The account key in ``text``; XpubError for anything else, private keys included."""
    if not isinstance(text, str) or not 20 < len(text) < 300:
        raise XpubError("extended public key expected")
    fingerprint, origin, body = _parse_origin(text) if text.startswith("[") else (
        b"", (), text
    )
    try:
        key = bip32.HDKey.from_string(body.strip())
    except Exception as exc:  # embit raises bare ValueError/HDError/EmbitError variants
        raise XpubError(f"not an extended key: {type(exc).__name__}") from None
    if key.is_private or key.version in _PRIVATE:
        raise XpubError("that is an extended PRIVATE key; the exchange holds no private keys")
    mainnet = key.version in _PUBLIC["main"]
    if not mainnet and key.version not in _PUBLIC["test"]:
        raise XpubError("unknown extended key version bytes")
    return AccountKey(key, fingerprint or key.my_fingerprint, origin, mainnet)


def check_key_network(account: AccountKey, network: str) -> None:
    if account.mainnet != (network == "mainnet"):
        kind = "mainnet" if account.mainnet else "test-network"
        raise XpubError(f"a {kind} extended key cannot serve a {network} exchange")


def address_at(account: AccountKey, chain: int, index: int, network: str) -> str:
    check_key_network(account, network)
    pubkey = account.child(chain, index)
    return str(script.p2wpkh(pubkey).address(NETWORKS[_EMBIT_NET[network]]))


def deposit_address(xpub: str, index: int, *, network: str | None = None) -> str:
    """The BIP84 receive address ``index`` of ``xpub`` (``<account>/0/index``), bech32.

    ``network`` picks the human-readable part (regtest's ``bcrt`` cannot be told from the
    key's version bytes); by default mainnet keys give ``bc1...`` and test keys ``tb1...``.
    """
    account = parse_xpub(xpub)
    if network is None:
        network = "mainnet" if account.mainnet else "testnet"
    if type(index) is not int or not 0 <= index <= MAX_INDEX:
        raise ValueError(f"index must be an integer in [0, {MAX_INDEX}]")
    return address_at(account, RECEIVE, index, network)
