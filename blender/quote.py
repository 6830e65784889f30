"""The BitWrk panel's *Quote*: a job's time and price before anything is bought (no bpy).

The sample tiles are rendered in a separate Blender process (the artist's Blender stays
as it is) and the market's asks come from the connected exchange; the figures are
:class:`bitwrk.quote.Quote`'s, the same as ``python -m bitwrk.buy --quote`` prints.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..bitwrk.buy import plan
from ..bitwrk.quote import Quote, asks_within, measure
from ..bitwrk.render.composer import Composer, command
from .bridge import Bridge
from .session import RenderRequest, job_article

ROOT = Path(__file__).resolve().parents[1]  # the directory holding bitwrk/


def quote(bridge: Bridge, request: RenderRequest, frames: list[int], workdir: Path,
          blender_binary: str | None = None) -> Quote:
    """Plan the job as a purchase would, ask the market, time the sample tile."""
    tiles = str(request.tiles) if request.tiles else "auto"
    job_plan = plan(request.info, "scene.blend", frames, tiles, request.cost_class,
                    request.gpu)
    article = job_article(job_plan.article, request.trusted_only)
    daemon = bridge.connect(request.exchange_url)
    assert daemon.client is not None
    market = daemon.call(daemon.client.market(article), 30)
    fee_bps = int(daemon.call(daemon.client.info(), 30)["fee_bps"])
    scratch = workdir / "quote"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"BLENDER_USER_RESOURCES": str(scratch / "blender"),
                "XDG_CACHE_HOME": str(scratch / "cache")})
    with Composer(request.blend, env, command(ROOT, blender_binary)) as composer:
        return measure(composer, article, job_plan.units,
                       asks_within(market, request.max_price), request.max_price, fee_bps)


def headline(q: Quote) -> str:
    """One line for the panel."""
    expected, most = q.cost()
    wall = q.seconds()
    when = f"about {wall:.0f} s" if wall is not None else "no seller asks that little now"
    return f"Quote: {q.units} units, {when}, about {expected} sat (at most {most})"
