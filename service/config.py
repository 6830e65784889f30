"""Exchange configuration: one frozen dataclass, built by the CLI or by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from bitwrk.keys import NETWORKS

APP_NAME = "bitwrk-exchange"

# Working time per cost class (seconds): roughly the ray budget at a slow 2-core seller.
DEFAULT_WORKING_SECONDS = {"512M": 300.0, "2G": 900.0, "8G": 2700.0, "32G": 7200.0}


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class Timeouts:
    """Seconds; docs/protocol.md. ``scaled`` shortens all of them for tests."""

    bid_lifetime: float = 120.0
    establish: float = 60.0
    transmit: float = 120.0
    review: float = 900.0
    working: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WORKING_SECONDS))

    def scaled(self, factor: float) -> Timeouts:
        return Timeouts(
            bid_lifetime=self.bid_lifetime * factor,
            establish=self.establish * factor,
            transmit=self.transmit * factor,
            review=self.review * factor,
            working={k: v * factor for k, v in self.working.items()},
        )


@dataclass(frozen=True)
class PaymentConfig:
    """Bitcoin deposits and withdrawals (docs/operator.md); off unless ``xpub`` is set. Amounts in
    satoshi; the watcher runs only when ``backend`` is "core" or "esplora"."""

    xpub: str | None = None  # account-level xpub/tpub/zpub/vpub, optionally [fp/path]-prefixed
    backend: str = "none"  # "none" | "core" | "esplora"
    backend_url: str = ""  # http://127.0.0.1:38332/wallet/bitwrk or https://mempool.space/signet/api
    rpc_user: str = ""
    rpc_password: str = ""
    confirmations: int = 6
    min_deposit: int = 10_000
    min_withdrawal: int = 50_000
    daily_limit: int = 10_000_000  # per account per 24 h
    address_rate: int = 10  # new deposit addresses per account per window
    address_rate_total: int = 1000  # new deposit addresses, all accounts, per window
    address_window: float = 3600.0
    poll_seconds: float = 30.0
    request_timeout: float = 10.0
    fee_rate: int = 2  # sat/vB for exported payout transactions

    def __post_init__(self) -> None:
        if self.backend not in ("none", "core", "esplora"):
            raise ValueError("payment backend must be none, core or esplora")
        if self.backend != "none" and not self.backend_url:
            raise ValueError("a payment backend needs backend_url")
        if not 1 <= self.confirmations <= 1000:
            raise ValueError("confirmations must be between 1 and 1000")
        if min(self.min_deposit, self.min_withdrawal, self.daily_limit, self.fee_rate) < 1:
            raise ValueError("payment minimums, limits and fee rate must be positive")

    @property
    def enabled(self) -> bool:
        return self.xpub is not None


@dataclass(frozen=True)
class Limits:
    """What one client (or everyone together) may hold of the exchange; README "Limits"."""

    max_connections: int = 4000  # capped further below the process's file-descriptor limit
    max_connections_per_ip: int = 256
    header_timeout: float = 10.0  # a request's headers must arrive within this (idle too)
    body_timeout: float = 10.0  # and its body within this once the handler reads it
    max_streams: int = 3000  # event-stream subscribers, public and private together
    max_streams_per_address: int = 4  # private streams of one address
    stream_flush: float = 0.1  # events are sent to subscribers in batches this often
    stream_token_lifetime: float = 3600.0  # a private stream's token must be this fresh
    max_open_bids: int = 200  # placed bids per address, buys and sells
    bar_after_misses: int = 3  # missed endpoints in a row before a seller is barred
    bar_seconds: float = 3600.0

    def __post_init__(self) -> None:
        counts = (self.max_connections, self.max_connections_per_ip, self.max_streams,
                  self.max_streams_per_address, self.max_open_bids, self.bar_after_misses)
        if min(counts) < 1:
            raise ValueError("connection, stream, bid and miss limits must be at least 1")
        times = (self.header_timeout, self.body_timeout, self.stream_flush,
                 self.stream_token_lifetime)
        if min(times) <= 0 or self.bar_seconds < 0:
            raise ValueError("timeouts must be positive")


@dataclass(frozen=True)
class Config:
    db_path: Path
    operator: str  # address whose signature credits deposits and resolves disputes
    network: str = "regtest"
    fee_bps: int = 300
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_body: int = 16 * 1024
    max_price: int = 10**12  # 10,000 BTC: far above any render unit, far below int64
    keepalive_seconds: float = 15.0
    payments: PaymentConfig = field(default_factory=PaymentConfig)
    limits: Limits = field(default_factory=Limits)
    shift_deadlines: bool = True  # on start, move open deadlines later by the downtime
    relay_url: str | None = None  # the relay for sellers behind NAT (docs/relay.md)
    allow_local_probes: bool = False  # reachability probes may call private addresses
    # postgresql://user@host/db: a shared PostgreSQL store instead of the SQLite file
    # (docs/postgresql.md); several exchange processes may then serve it together.
    store_url: str | None = None

    @property
    def store(self) -> str | Path:
        """What ``service.store.connect`` opens: the PostgreSQL URL, else the SQLite file."""
        return self.store_url or self.db_path

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"unknown network {self.network!r}; one of {NETWORKS}")
        if not 0 <= self.fee_bps <= 5000:
            raise ValueError("fee_bps must be between 0 and 5000")
