"""Several exchange processes on one PostgreSQL (issue 15), through real processes.

Three ``python -m service --db postgresql://...`` processes on three ports share one
database (a fresh one on the session's server, tests/conftest.py). Signed participants
spread their requests over the processes at random, concurrently; the tests then read the
store directly and check what must hold as with one process: the ledger invariant, price-
time priority across processes, nonces strictly increasing per address, events heard on
every process, each deadline fired once, and — after a SIGKILL mid-load — nothing
acknowledged lost and nothing applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from bitwrk.keys import PrivateKey
from tests.conftest import ARTICLE, Party
from tests.e2e.conftest import ServerProcess
from tools.pgserver import PgServer

pytestmark = pytest.mark.slow
PROCESSES = 3
REFUSED: list[str] = []


class PgServerProcess(ServerProcess):
    """One exchange process on a shared PostgreSQL store, with the shared operator key."""

    def __init__(self, workdir: Path, store_url: str, key_path: Path, **kw: Any) -> None:
        super().__init__(workdir, **kw)
        self.store_url = store_url
        self.key_path = key_path

    def _command(self, held: bool = False) -> list[str]:
        command = super()._command(held)
        at = command.index("--db")
        command[at + 1] = self.store_url
        return [*command, "--operator-key", str(self.key_path)]


class Cluster:
    """The processes, the operator, and a direct connection to the store for checks."""

    def __init__(self, servers: list[PgServerProcess], operator: PrivateKey, url: str) -> None:
        self.servers = servers
        self.operator = Party(operator)
        self.url = url
        self.exchange_id = str(servers[0].info["exchange"])
        self.session: aiohttp.ClientSession | None = None

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            return list(conn.execute(query, params).fetchall())

    def any_server(self) -> PgServerProcess:
        return random.choice([s for s in self.servers if s.running])

    async def post(self, server: ServerProcess, path: str, body: dict[str, Any]
                   ) -> tuple[int, Any]:
        assert self.session is not None
        async with self.session.post(server.url + path, json=body) as resp:
            return resp.status, await resp.json()

    async def get(self, server: ServerProcess, path: str) -> Any:
        assert self.session is not None
        async with self.session.get(server.url + path) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def fund(self, party: Party, amount: int) -> None:
        body = self.operator.sign(self.exchange_id, action="deposit",
                                  uid="t-" + secrets.token_hex(8), account=party.address,
                                  amount=amount, kind="play", ref="test")
        status, data = await self.post(self.any_server(), "/api/v1/deposits", body)
        assert status == 200, data

    async def bid(self, party: Party, side: str, price: int, server: ServerProcess | None = None,
                  article: str = ARTICLE) -> tuple[int, Any]:
        body = party.sign(self.exchange_id, action="bid", type=side, article=article,
                          price=price)
        return await self.post(server or self.any_server(), "/api/v1/bids", body)

    def check_invariant(self) -> None:
        """The running totals (every shard) equal a recount, and money is conserved: read
        in one snapshot while the processes may still be retiring deadlines."""
        with psycopg.connect(self.url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            (available, blocked, fees, world, deposits, *totals), = conn.execute(
                "SELECT (SELECT COALESCE(SUM(available), 0) FROM accounts),"
                " (SELECT COALESCE(SUM(blocked), 0) FROM accounts),"
                " (SELECT COALESCE(SUM(fee_delta), 0) FROM movements),"
                " (SELECT COALESCE(SUM(world_delta), 0) FROM movements),"
                " (SELECT COALESCE(SUM(amount), 0) FROM deposits),"
                " SUM(available), SUM(blocked), SUM(fee), SUM(world) FROM ledger_totals"
            ).fetchall()
        assert available + blocked + fees == deposits == -world
        assert totals == [available, blocked, fees, world]


@pytest.fixture
def cluster_factory(pg_server: PgServer, tmp_path: Path) -> Iterator[Any]:
    made: list[PgServerProcess] = []

    def make(timeout_scale: float = 0.05) -> Cluster:
        url = pg_server.new_database()
        key = PrivateKey.generate("regtest")
        key_path = tmp_path / "operator.wif"
        key_path.write_text(key.to_wif() + "\n")
        # Nobody here sends endpoints: no seller is barred for the timeouts that follow.
        servers = [PgServerProcess(tmp_path / f"p{i}", url, key_path,
                                   timeout_scale=timeout_scale, ready_timeout=60.0,
                                   extra_args=("--bar-after-misses", "100000"))
                   for i in range(PROCESSES)]
        made.extend(servers)
        for server in servers:
            server.start()
        return Cluster(servers, key, url)

    yield make
    for server in made:
        server.close()


@pytest.fixture
async def cluster(cluster_factory: Any) -> AsyncIterator[Cluster]:
    c: Cluster = await asyncio.to_thread(cluster_factory)
    async with aiohttp.ClientSession() as session:
        c.session = session
        yield c


async def test_price_time_priority_holds_across_processes(cluster: Cluster) -> None:
    """Asks placed through different processes are taken best price first, then oldest,
    whichever process the buys arrive at."""
    a, b, c, d, buyer = Party(), Party(), Party(), Party(), Party()
    await cluster.fund(buyer, 1_000_000)
    s0, s1, s2 = cluster.servers
    asks = [(a, 105, s0), (b, 100, s1), (c, 100, s2), (d, 101, s0)]
    ids = {}
    for party, price, server in asks:
        status, data = await cluster.bid(party, "sell", price, server)
        assert status == 200 and data["state"] == "placed", data
        ids[party.address] = data["id"]
    order = []
    for server in (s2, s1, s0, s2):
        status, data = await cluster.bid(buyer, "buy", 110, server)
        assert status == 200 and data["state"] == "matched", data
        tx = await cluster.get(server, f"/api/v1/transactions/{data['txid']}")
        order.append((tx["seller"], tx["price"]))
    assert order == [(b.address, 100), (c.address, 100), (d.address, 101), (a.address, 105)]
    cluster.check_invariant()


async def test_a_nonce_is_accepted_once_across_processes(cluster: Cluster) -> None:
    """The same signed bid sent to every process at once is accepted exactly once; an
    older nonce is refused on any process after a newer one was accepted."""
    seller = Party()
    body = seller.sign(cluster.exchange_id, action="bid", type="sell", article=ARTICLE,
                       price=500)
    results = await asyncio.gather(*(cluster.post(s, "/api/v1/bids", body)
                                     for s in cluster.servers))
    assert sorted(status for status, _ in results) == [200, 409, 409]
    older = seller.sign(cluster.exchange_id, action="bid", type="sell", article=ARTICLE,
                        price=501)
    newer = seller.sign(cluster.exchange_id, action="bid", type="sell", article=ARTICLE,
                        price=502)
    assert (await cluster.post(cluster.servers[1], "/api/v1/bids", newer))[0] == 200
    status, data = await cluster.post(cluster.servers[2], "/api/v1/bids", older)
    assert status == 409 and data["error"] == "replayed", data
    assert cluster.sql("SELECT COUNT(*) FROM bids WHERE address = %s", seller.address) == [(2,)]


async def _listen(server: ServerProcess, heard: list[int], ready: asyncio.Event) -> None:
    """Count ``trade`` events on ``server``'s public stream."""
    async with aiohttp.ClientSession() as session, session.get(
            server.url + "/api/v1/events", timeout=aiohttp.ClientTimeout(total=None)) as resp:
        ready.set()
        async for line in resp.content:
            if line.startswith(b"event: trade"):
                heard.append(1)


async def _trader(cluster: Cluster, party: Party, side: str, count: int,
                  acked: list[int]) -> None:
    for _ in range(count):
        price = random.randint(95, 110) if side == "buy" else random.randint(90, 105)
        with contextlib.suppress(aiohttp.ClientError):
            status, data = await cluster.bid(party, side, price)
            if status == 200:
                acked.append(int(data["id"]))
            else:
                REFUSED.append(f"{status} {data.get('error')} {data.get('message')}")


async def test_concurrent_traders_on_three_processes(cluster: Cluster) -> None:
    """Buyers and sellers bid concurrently through random processes: the book is never
    left crossed (matching was serialized per article), each bid trades at most once,
    the invariant holds, every process's public stream hears every trade, and each
    transaction's establish deadline fires exactly once."""
    buyers, sellers = [Party() for _ in range(6)], [Party() for _ in range(6)]
    for b in buyers:  # one signer's nonces must arrive in order: one at a time
        await cluster.fund(b, 1_000_000)
    heard: list[list[int]] = [[] for _ in cluster.servers]
    ready = [asyncio.Event() for _ in cluster.servers]
    listeners = [asyncio.create_task(_listen(s, h, r))
                 for s, h, r in zip(cluster.servers, heard, ready, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 30)
    await asyncio.sleep(0.5)  # the streams' hello is out
    acked: list[int] = []
    REFUSED.clear()
    await asyncio.gather(*(_trader(cluster, p, "buy", 25, acked) for p in buyers),
                         *(_trader(cluster, p, "sell", 25, acked) for p in sellers))
    # a busy answer (the writer lock not granted in time on a loaded machine) is allowed,
    # nothing else is
    assert all(r.startswith("503 busy") for r in REFUSED), Counter(REFUSED)
    assert len(acked) >= 150, (len(acked), Counter(REFUSED))
    (trades,), = cluster.sql("SELECT COUNT(*) FROM transactions")
    assert trades > 20
    # never crossed: every resting buy is below every resting sell
    (best_buy, best_sell), = cluster.sql(
        "SELECT (SELECT MAX(price) FROM bids WHERE state = 'placed' AND type = 'buy'),"
        " (SELECT MIN(price) FROM bids WHERE state = 'placed' AND type = 'sell')")
    assert best_buy is None or best_sell is None or best_buy < best_sell
    # each bid in at most one transaction, and each matched bid in exactly one
    assert cluster.sql("SELECT COUNT(*) FROM bids WHERE state = 'matched'") == [(2 * trades,)]
    assert cluster.sql("SELECT COUNT(DISTINCT buy_bid) + COUNT(DISTINCT sell_bid)"
                       " FROM transactions") == [(2 * trades,)]
    cluster.check_invariant()
    # every process heard every trade (this process's and those relayed by the others)
    for _ in range(100):
        if all(len(h) >= trades for h in heard):
            break
        await asyncio.sleep(0.2)
    assert [len(h) for h in heard] == [trades] * PROCESSES
    for task in listeners:
        task.cancel()
    # nobody sends an endpoint: every trade times out (3 s), once; bids expire (6 s)
    for _ in range(150):
        (open_rows,), = cluster.sql(
            "SELECT (SELECT COUNT(*) FROM transactions WHERE retired IS NULL)"
            " + (SELECT COUNT(*) FROM bids WHERE state = 'placed')")
        if open_rows == 0:
            break
        await asyncio.sleep(0.2)
    assert open_rows == 0
    assert cluster.sql("SELECT COUNT(*) FROM messages WHERE action = 'timeout'") == [(trades,)]
    assert cluster.sql("SELECT COUNT(*) FROM (SELECT txid FROM movements WHERE kind = 'refund'"
                       " GROUP BY txid HAVING COUNT(*) > 1) AS twice") == [(0,)]
    assert cluster.sql("SELECT COALESCE(SUM(blocked), 0) FROM accounts") == [(0,)]
    cluster.check_invariant()


async def test_sigkill_of_one_process_mid_load_loses_nothing_acknowledged(
        cluster: Cluster) -> None:
    """One of three processes is SIGKILLed while participants trade through all of them:
    every bid any process acknowledged is in the store, none twice, the invariant holds,
    and the restarted process serves the same book."""
    buyers, sellers = [Party() for _ in range(4)], [Party() for _ in range(4)]
    for b in buyers:
        await cluster.fund(b, 1_000_000)
    acked: list[int] = []
    load = asyncio.gather(*(_trader(cluster, p, "buy", 30, acked) for p in buyers),
                          *(_trader(cluster, p, "sell", 30, acked) for p in sellers))
    await asyncio.sleep(0.5)
    victim = cluster.servers[1]
    await asyncio.to_thread(victim.kill)
    await load
    stored = {r[0] for r in cluster.sql("SELECT id FROM bids")}
    assert set(acked) <= stored
    assert cluster.sql("SELECT COUNT(*) FROM (SELECT document FROM bids GROUP BY document"
                       " HAVING COUNT(*) > 1) AS twice") == [(0,)]
    cluster.check_invariant()
    await victim.restart_async()
    info = await cluster.get(victim, "/api/v1/info")
    assert info["exchange"] == cluster.exchange_id
    status, _ = await cluster.bid(Party(), "sell", 10_000, victim)
    assert status == 200
    cluster.check_invariant()
