"""Article ids: what is traded (docs/protocol.md).

``net.bitwrk/blender/<major>.<minor>/<cost class>[~gpu][~trusted]``. A cost class is a ray
budget: pixels × samples × (max bounces + 1) × view layers. ``~gpu`` is rendered on a GPU
(any Cycles backend: OptiX, CUDA, HIP, Metal, oneAPI); without it, on a CPU. The two are
separate markets because their pixels are not the same: a CPU unit equals the buyer's own
render bit for bit, a GPU unit only within the result check's GPU tolerance, and scenes
with CPU-only features (OSL) cannot be sold as ``~gpu`` at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UnknownArticle

COST_CLASSES: dict[str, int] = {
    "512M": 512 * 2**20,
    "2G": 2 * 2**30,
    "8G": 8 * 2**30,
    "32G": 32 * 2**30,
}
GPU_SUFFIX = "~gpu"
TRUSTED_SUFFIX = "~trusted"
_ARTICLE = re.compile(
    r"^net\.bitwrk/blender/(?P<major>[1-9][0-9]?)\.(?P<minor>[0-9]{1,2})/"
    r"(?P<cls>512M|2G|8G|32G)(?P<gpu>~gpu)?(?P<trusted>~trusted)?$"
)


@dataclass(frozen=True)
class Article:
    blender: str  # "5.0"
    cost_class: str  # "512M" ...
    trusted: bool
    gpu: bool = False

    @property
    def id(self) -> str:
        gpu = GPU_SUFFIX if self.gpu else ""
        trusted = TRUSTED_SUFFIX if self.trusted else ""
        return f"net.bitwrk/blender/{self.blender}/{self.cost_class}{gpu}{trusted}"

    @property
    def ray_budget(self) -> int:
        return COST_CLASSES[self.cost_class]

    @property
    def device(self) -> str:
        """The job spec's device for this article: ``GPU`` or ``CPU``."""
        return "GPU" if self.gpu else "CPU"


def article_id(blender: str, cost_class: str, gpu: bool = False,
               trusted: bool = False) -> str:
    """The id of an article (the one place that spells it)."""
    return Article(blender, cost_class, trusted, gpu).id


def parse_article(text: object) -> Article:
    """Parse an article id; anything else is an :class:`UnknownArticle`."""
    if not isinstance(text, str) or len(text) > 80:
        raise UnknownArticle("article must be a string like net.bitwrk/blender/5.0/2G")
    m = _ARTICLE.fullmatch(text)
    if m is None:
        raise UnknownArticle(f"unknown article {text!r}", article=text)
    return Article(f"{m['major']}.{m['minor']}", m["cls"], m["trusted"] is not None,
                   m["gpu"] is not None)
