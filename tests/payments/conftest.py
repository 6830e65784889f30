"""Payment fixtures: a test-network account key (the TEST holds its private half, to sign
exported PSBTs like an operator would offline; the exchange gets only the xpub), the fake
chain, fake backends as real local HTTP servers, and the exchange app with payments on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from embit import bip32, bip39
from embit.networks import NETWORKS

from service import create_app
from service.appkeys import BUS, COMMITTER
from service.config import PaymentConfig
from service.payments.chain import ChainBackend
from service.payments.core import CoreBackend
from service.payments.derivation import parse_xpub
from service.payments.esplora import EsploraBackend
from service.payments.watcher import ChainWatcher
from tests.conftest import Clock, Party
from tests.payments.fakechain import FakeChain, core_app, esplora_app
from tests.service.conftest import Api, make_config

MNEMONIC = " ".join(["abandon"] * 11 + ["about"])
ROOT = bip32.HDKey.from_seed(bip39.mnemonic_to_seed(MNEMONIC), NETWORKS["test"]["xprv"])
ACCOUNT = ROOT.derive("m/84h/1h/0h")
XPUB = (f"[{ROOT.my_fingerprint.hex()}/84h/1h/0h]"
        + ACCOUNT.to_public().to_base58(NETWORKS["test"]["zpub"]))  # a vpub
REGTEST_ELSEWHERE = "bcrt1q6rz28mcfaxtmd6v789l9rrlrusdprr9pz3cppk"


def payment_config(**overrides: Any) -> PaymentConfig:
    args: dict[str, Any] = {"xpub": XPUB, "confirmations": 6, "min_deposit": 10_000,
                            "min_withdrawal": 50_000, "daily_limit": 1_000_000,
                            "address_rate": 3, "poll_seconds": 0.01}
    args.update(overrides)
    return PaymentConfig(**args)


@pytest.fixture
def chain() -> FakeChain:
    return FakeChain()


@pytest.fixture(params=["core", "esplora"])
async def backend(request: Any, chain: FakeChain) -> AsyncIterator[ChainBackend]:
    kind = request.param
    server = TestServer(core_app(chain) if kind == "core" else esplora_app(chain))
    await server.start_server()
    url = str(server.make_url("/wallet/bitwrk" if kind == "core" else ""))
    impl: ChainBackend
    if kind == "core":
        impl = CoreBackend(url, parse_xpub(XPUB), user="rpc", password="secret", timeout=0.5,
                           attempts=2, backoff=0.01)
    else:
        impl = EsploraBackend(url, timeout=0.5, attempts=2, backoff=0.01)
    yield impl
    await impl.close()
    await server.close()


@pytest.fixture
def operator() -> Party:
    return Party()


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def make_api(aiohttp_client: Any, tmp_path: Path, operator: Party, clock: Clock,
                   **overrides: Any) -> Api:
    config = make_config(tmp_path, operator, payments=payment_config(**overrides))
    client = await aiohttp_client(create_app(config, clock))
    return Api(client, operator, clock)


@pytest.fixture
async def api(aiohttp_client: Any, tmp_path: Path, operator: Party, clock: Clock) -> Api:
    return await make_api(aiohttp_client, tmp_path, operator, clock)


def watcher_for(api: Api, backend: ChainBackend) -> ChainWatcher:
    app = api.client.server.app
    return ChainWatcher(api.ex, app[COMMITTER], app[BUS], backend)


async def check_money(api: Api) -> dict[str, int]:
    t: dict[str, int] = await api.totals()
    pending, paid = t["pending_withdrawals"], t["paid_withdrawals"]
    assert t["available"] + t["blocked"] + t["fees"] + pending == t["deposits"] - paid
    assert t["world"] == -t["deposits"] + pending + paid
    return t
