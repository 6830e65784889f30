"""The job spec: exactly what a seller renders for one unit of work (docs/architecture.md).

A spec names the .blend inside the job's files, the scene, view layers and frame, the
frame's effective resolution (after ``resolution_percentage``), the pixel rect to render,
and the sampling settings that decide the ray budget and so the cost class
(``bitwrk.articles.COST_CLASSES``). Everything else comes from the .blend itself.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..articles import COST_CLASSES
from .errors import CostClassExceeded, JobSpecError
from .tiling import MAX_SIZE, Rect

ENGINES = frozenset({"CYCLES"})
DEVICES = frozenset({"CPU", "GPU", "CUDA", "OPTIX", "HIP", "METAL", "ONEAPI"})
OUTPUTS = frozenset({"EXR_MULTILAYER"})
MAX_FRAME = 1_048_574  # Blender's MAXFRAME
MAX_SAMPLES = 1 << 24  # Cycles' sample limit
MAX_BOUNCES = 1024
MAX_OVERSCAN = 1024
MAX_NAME_BYTES = 63  # Blender's MAX_NAME is 64 bytes with the terminating NUL
_VERSION = re.compile(r"^[1-9][0-9]?\.[0-9]{1,2}$")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobSpecError(f"{name} must be an integer", field=name)
    if not low <= value <= high:
        raise JobSpecError(f"{name} must be in {low}..{high}, got {value}", field=name)


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise JobSpecError(f"{name} must be a non-empty string", field=name)
    if len(value.encode()) > MAX_NAME_BYTES:
        raise JobSpecError(f"{name} is longer than {MAX_NAME_BYTES} bytes", field=name)


def _check_blend(value: object) -> None:
    """A relative POSIX path inside the job's files, ending in .blend."""
    if not isinstance(value, str) or not value.endswith(".blend") or len(value) > 1024:
        raise JobSpecError("blend must be a relative path ending in .blend", field="blend")
    parts = value.split("/")
    if value.startswith("/") or "\\" in value or "\x00" in value or ":" in parts[0] or any(
            p in ("", ".", "..") for p in parts):
        raise JobSpecError(f"blend path {value!r} must stay inside the job", field="blend")


@dataclass(frozen=True)
class JobSpec:
    """One unit of render work: the pixels ``[x0, x1) x [y0, y1)`` of one frame."""

    blend: str
    scene: str
    view_layers: tuple[str, ...]
    frame: int
    width: int
    height: int
    x0: int
    x1: int
    y0: int
    y1: int
    samples: int
    seed: int
    max_bounces: int
    denoise: bool = False
    overscan: int = 0
    blender: str = "5.0"
    engine: str = "CYCLES"
    device: str = "CPU"
    output: str = "EXR_MULTILAYER"

    def __post_init__(self) -> None:
        for name, allowed in (("engine", ENGINES), ("device", DEVICES), ("output", OUTPUTS)):
            if getattr(self, name) not in allowed:
                raise JobSpecError(f"{name} must be one of {sorted(allowed)}", field=name)
        if not isinstance(self.blender, str) or not _VERSION.match(self.blender):
            raise JobSpecError("blender must be a version like 5.0", field="blender")
        _check_blend(self.blend)
        _check_name("scene", self.scene)
        if not isinstance(self.view_layers, tuple) or not self.view_layers:
            raise JobSpecError("view_layers must name at least one layer", field="view_layers")
        for layer in self.view_layers:
            _check_name("view_layers", layer)
        if len(set(self.view_layers)) != len(self.view_layers):
            raise JobSpecError("view_layers must not repeat", field="view_layers")
        _check_int("frame", self.frame, -MAX_FRAME, MAX_FRAME)
        _check_int("width", self.width, 1, MAX_SIZE)
        _check_int("height", self.height, 1, MAX_SIZE)
        for name, size in (("x0", self.width), ("x1", self.width), ("y0", self.height),
                           ("y1", self.height)):
            _check_int(name, getattr(self, name), 0, size)
        if not self.rect.inside(self.width, self.height):
            raise JobSpecError(f"empty rect {self.rect}", field="x0")
        _check_int("samples", self.samples, 1, MAX_SAMPLES)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_int("max_bounces", self.max_bounces, 0, MAX_BOUNCES)
        _check_int("overscan", self.overscan, 0, MAX_OVERSCAN)
        if not isinstance(self.denoise, bool):
            raise JobSpecError("denoise must be true or false", field="denoise")

    @property
    def rect(self) -> Rect:
        """The pixels this unit delivers."""
        return Rect(self.x0, self.x1, self.y0, self.y1)

    @property
    def render_rect(self) -> Rect:
        """The pixels rendered: the rect plus overscan, clamped to the frame."""
        return self.rect.grown(self.overscan, self.width, self.height)

    @property
    def is_full_frame(self) -> bool:
        return self.rect == Rect(0, self.width, 0, self.height)

    def with_rect(self, rect: Rect) -> JobSpec:
        return replace(self, x0=rect.x0, x1=rect.x1, y0=rect.y0, y1=rect.y1)

    def ray_budget_for(self, rect: Rect) -> int:
        """pixels x samples x (max bounces + 1) x view layers, for ``rect`` plus overscan."""
        rendered = rect.grown(self.overscan, self.width, self.height)
        return rendered.pixels * self.samples * (self.max_bounces + 1) * len(self.view_layers)

    def ray_budget(self) -> int:
        """The ray budget of this unit (overscan pixels included: the seller renders them)."""
        return self.ray_budget_for(self.rect)

    def cost_class(self) -> str:
        """The smallest cost class whose budget covers this unit."""
        budget = self.ray_budget()
        for name, limit in sorted(COST_CLASSES.items(), key=lambda item: item[1]):
            if budget <= limit:
                return name
        raise CostClassExceeded(f"ray budget {budget} exceeds every cost class",
                                ray_budget=budget)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (``view_layers`` as a list); :meth:`from_json` reverses it."""
        data = asdict(self)
        data["view_layers"] = list(self.view_layers)
        return data

    def dumps(self) -> str:
        """Canonical JSON text: sorted keys, no spaces."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: object) -> JobSpec:
        """Parse a spec from a dict (or JSON text); unknown or missing keys are errors."""
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise JobSpecError(f"job spec is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise JobSpecError("job spec must be a JSON object")
        names = {f.name for f in fields(cls)}
        unknown, missing = set(data) - names, names - set(data)
        if unknown or missing:
            raise JobSpecError("job spec fields do not match",
                               unknown=sorted(map(str, unknown)), missing=sorted(missing))
        layers = data["view_layers"]
        if not isinstance(layers, list):
            raise JobSpecError("view_layers must be a list", field="view_layers")
        return cls(**{**data, "view_layers": tuple(layers)})
