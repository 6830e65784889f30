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
    """Seconds; DESIGN §4. ``scaled`` shortens all of them for tests."""

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
class Config:
    db_path: Path
    operator: str  # address whose signature credits deposits and resolves disputes
    network: str = "regtest"
    fee_bps: int = 300
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_body: int = 16 * 1024
    max_price: int = 10**12  # 10,000 BTC: far above any render unit, far below int64
    keepalive_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"unknown network {self.network!r}; one of {NETWORKS}")
        if not 0 <= self.fee_bps <= 5000:
            raise ValueError("fee_bps must be between 0 and 5000")
