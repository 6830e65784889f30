"""Validation of withdrawal destinations for the exchange's network (BIP173/BIP350 bech32,
base58check P2PKH/P2SH), through embit's decoders; the scriptPubKey to pay."""

from __future__ import annotations

from typing import Any

from embit import base58, bech32
from embit.networks import NETWORKS
from embit.script import Script

from bitwrk.errors import AddressError

_EMBIT_NET = {"mainnet": "main", "testnet": "test", "signet": "signet", "regtest": "regtest"}
MAX_LEN = 90  # BIP173's limit on a whole bech32 string


def _params(network: str) -> dict[str, Any]:
    return NETWORKS[_EMBIT_NET[network]]  # type: ignore[no-any-return]


def _bech32_script(address: str, network: str) -> Script | None:
    encoding, hrp, _ = bech32.bech32_decode(address)
    if encoding is None:
        return None
    expected = _params(network)["bech32"]
    if hrp != expected:
        raise AddressError(f"not a {network} address (prefix {hrp}1, expected {expected}1)",
                           address=address)
    version, program = bech32.decode(hrp, address)
    if version is None or version > 1 or (version == 1 and len(program) != 32):
        raise AddressError("unsupported or malformed segwit address", address=address)
    op = version + 0x50 if version else 0
    return Script(bytes([op, len(program), *program]))


def _base58_script(address: str, network: str) -> Script:
    try:
        data = base58.decode_check(address)
    except Exception:  # embit raises ValueError or its own error for bad characters/checksum
        raise AddressError("not a valid bitcoin address", address=address) from None
    params = _params(network)
    if len(data) != 21:
        raise AddressError("not a valid bitcoin address", address=address)
    if data[:1] == params["p2pkh"]:
        return Script(b"\x76\xa9\x14" + data[1:] + b"\x88\xac")
    if data[:1] == params["p2sh"]:
        return Script(b"\xa9\x14" + data[1:] + b"\x87")
    raise AddressError(f"not a {network} address", address=address)


def payout_script(address: object, network: str) -> Script:
    """The scriptPubKey paying ``address``; AddressError unless it is a well-formed
    P2PKH, P2SH, P2WPKH, P2WSH or P2TR address of ``network``."""
    if not isinstance(address, str) or not 14 <= len(address) <= MAX_LEN:
        raise AddressError("a bitcoin address string is expected", address=str(address)[:100])
    script = _bech32_script(address, network)
    return script if script is not None else _base58_script(address, network)
