"""A job's price and time, estimated before anything is bought (no bpy here).

Two tiles of the job's first frame are rendered locally on one core, as a seller would
render them: first a tiny one, whose time is what every unit pays whatever its size
(loading the scene into Cycles, building its BVH, saving), then the sample, about 1/16 of
the frame, whose seconds per pixel give the rest of each unit's render time. The market's
asks for the job's article (``GET /api/v1/market/ARTICLE``) say how many sellers would take
units now and at what price. Used by ``python -m bitwrk.buy --quote`` and the extension's
*Quote* button; docs/buying.md explains the figures.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .money import fee_for
from .render.tiling import Rect

if TYPE_CHECKING:
    from .render.composer import Composer
    from .render.jobspec import JobSpec

SAMPLE_SHARE = 16  # the sample tile is about 1/16 of the frame ...
SAMPLE_MIN = 32  # ... but at least 32 x 32 px (or the whole frame, when smaller)
SETUP_SIDE = 8  # px: the tiny first render, which measures a unit's fixed cost


def sample_rect(width: int, height: int) -> Rect:
    """A tile in the middle of a ``width`` x ``height`` frame, about 1/16 of its area."""
    w = min(width, max(SAMPLE_MIN, width // 4))
    h = min(height, max(SAMPLE_MIN, height // 4))
    x0, y0 = (width - w) // 2, (height - h) // 2
    return Rect(x0, x0 + w, y0, y0 + h)


def setup_rect(width: int, height: int) -> Rect:
    """The tiny tile rendered first, in the middle of the sample."""
    w, h = min(width, SETUP_SIDE), min(height, SETUP_SIDE)
    x0, y0 = (width - w) // 2, (height - h) // 2
    return Rect(x0, x0 + w, y0, y0 + h)


@dataclass(frozen=True)
class Quote:
    """What a job would take: ``units`` of ``unit_pixels`` each (one entry per unit)."""

    article: str
    frames: int
    unit_pixels: tuple[int, ...]
    sample_pixels: int
    sample_seconds: float  # the sample tile on one local core
    asks: tuple[tuple[int, int], ...]  # (price, count) at or below the max price, cheapest first
    max_price: int
    fee_bps: int
    setup_seconds: float = 0.0  # the tiny tile before it: what each unit pays anyway

    @property
    def units(self) -> int:
        return len(self.unit_pixels)

    @property
    def cpu_seconds(self) -> float:
        """The whole job's render time on one core (the local render's, roughly)."""
        return (self.setup_seconds * self.units
                + self.sample_seconds * sum(self.unit_pixels) / self.sample_pixels)

    @property
    def sellers(self) -> int:
        """Asks that would match now (one per free seller)."""
        return sum(count for _price, count in self.asks)

    def seconds(self) -> float | None:
        """Wall time with the sellers asking now, each one core: whole rounds of units."""
        if not self.sellers:
            return None
        rounds = math.ceil(self.units / min(self.sellers, self.units))
        return rounds * self.cpu_seconds / self.units

    def cost(self) -> tuple[int, int]:
        """(expected, most) satoshi with fees: units spread over the asks as they stand;
        at most every unit at the max price."""
        most = self.units * (self.max_price + fee_for(self.max_price, self.fee_bps))
        if not self.asks:
            return most, most
        prices = [price for price, count in self.asks for _ in range(count)]
        expected = sum(p + fee_for(p, self.fee_bps)
                       for p in (prices[i % len(prices)] for i in range(self.units)))
        return expected, most

    def lines(self) -> list[str]:
        expected, most = self.cost()
        per_unit = self.cpu_seconds / self.units
        out = [f"quote: {self.units} units of {self.article} for {self.frames} frame(s)",
               f"  sample: {self.sample_pixels} px rendered here on one core in "
               f"{self.sample_seconds:.2f} s, after {self.setup_seconds:.2f} s of set-up -> "
               f"about {per_unit:.1f} s per unit, {self.cpu_seconds:.0f} s for the job on "
               "one core"]
        if self.asks:
            asks = ", ".join(f"{n} x {p}" for p, n in self.asks)
            out.append(f"  market: {self.sellers} ask(s) at or below {self.max_price} sat "
                       f"({asks} sat)")
            wall = self.seconds()
            assert wall is not None
            out.append(f"  time: about {wall:.0f} s with {min(self.sellers, self.units)} "
                       f"seller(s), plus start-up and the last frame's compositing")
        else:
            out.append(f"  market: no ask at or below {self.max_price} sat now: nothing would "
                       "be bought until a seller asks that little")
        out.append(f"  cost: about {expected} sat with fees ({self.fee_bps / 100:g} %), "
                   f"at most {most} sat (every unit at the max price)")
        return out


def asks_within(market: dict[str, Any], max_price: int) -> tuple[tuple[int, int], ...]:
    """The market view's asks at or below ``max_price``, cheapest first."""
    asks = sorted((int(a["price"]), int(a["count"])) for a in market.get("asks", []))
    return tuple((p, n) for p, n in asks if p <= max_price and n > 0)


def measure(composer: Composer, article: str, units: list[tuple[str, JobSpec]],
            asks: tuple[tuple[int, int], ...], max_price: int, fee_bps: int) -> Quote:
    """Render the set-up tile, then the sample, of the first unit's frame in ``composer``
    (a process that has the scene open; it only quotes afterwards), and quote ``units``."""
    first = units[0][1]
    composer.probe()
    setup = composer.test_tile(first.with_rect(setup_rect(first.width, first.height)).to_json())
    rect = sample_rect(first.width, first.height)
    seconds = composer.test_tile(first.with_rect(rect).to_json())
    return Quote(article, len({spec.frame for _u, spec in units}),
                 tuple(spec.rect.pixels for _u, spec in units), rect.pixels, seconds, asks,
                 max_price, fee_bps, setup)


def print_quote(args: argparse.Namespace, composer: Composer, name: str) -> int:
    """Print the job's estimated time and price (``--quote``); nothing is bought."""
    import asyncio

    from .buy import frames_of, plan

    info = composer.probe()
    job_plan = plan(info, name, frames_of(args.frames, info), args.tiles, args.cost_class,
                    args.gpu)
    market, fee_bps = asyncio.run(_market(args.exchange, job_plan.article, args.wait_exchange))
    q = measure(composer, job_plan.article, job_plan.units,
                asks_within(market, args.max_price), args.max_price, fee_bps)
    for line in q.lines():
        print(line)
    print("nothing bought (--quote)", flush=True)
    return 0


async def _market(url: str, article: str, wait: float) -> tuple[dict[str, Any], int]:
    """The article's market view and the exchange's fee, without an identity."""
    from .client import ExchangeClient

    async with ExchangeClient(url, retry_for=wait) as client:
        return await client.market(article), int((await client.info())["fee_bps"])
