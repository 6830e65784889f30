"""Checking a seller's tile before paying for it (pure: numpy, no bpy, no I/O).

Two steps. **Caps**: the result must decode as exactly the unit's rect with the passes an
honest render of the spec has (:func:`check_passes`, after :mod:`.exrheader` bounded the
decoder). **Content**: after the seller has committed to its result (the receipt signs
the ciphertext's hash), the buyer picks a few small patches of the unit at random
(:func:`pick_patches`, from ``secrets``: the seller cannot know them in advance), renders
them itself with the same Blender and compares (:func:`compare`). Cycles seeds every
pixel by its position in the frame, so a patch rendered on its own equals the same pixels
of the whole tile (docs/measured-facts.md R1, and ``tests/blender/test_spotcheck.py``).

Tolerance. On one CPU kernel the pixels are bit-identical. Across kernels they are not:
Cycles' SSE4.2 kernel (a CPU without AVX2) against its AVX2 kernel, and the BVH2 against
the Embree BVH, changed 59-73 % of the test scene's pixels, by at most 3.0e-4 relative
(mean 2e-6 absolute; 4.1e-4 with adaptive sampling and the denoising passes) — rounding,
not different samples. A value passes within
``ATOL + RTOL * |value|`` (RTOL is ~5x that measured noise); a pixel with any value
outside is an outlier, and up to ``MAX_OUTLIERS`` of the checked pixels may be outliers
(a ray that grazes an edge can take another path on another kernel). Lazy results are
far outside: 15 of 16 samples moves every pixel by ~2 %, and black, another tile, a lower
resolution or another frame of a moving scene move most pixels by far more.

GPU results (a unit whose spec says ``device: GPU``) are checked against the buyer's CPU
render with :data:`GPU_TOLERANCE`. The GPU kernels run the same algorithm with the same
seeds, but not the same floating-point code (fused multiply-add, fast-math intrinsics,
OptiX's own ray-triangle test), so a ray that grazes an edge takes another path more often
than between two CPU kernels, and that pixel then differs by up to its noise. Hence a
looser relative tolerance (still under the ~2 % a 15-of-16-samples result shifts every
pixel by) and a larger share of allowed outliers: a lazy result shifts *most* pixels, a
GPU's divergent paths a few percent of them. ``tools/gpu_check.py`` measures both shares
for OptiX and CUDA against the CPU on a real GPU; the constants below are set from that.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import ResultRejected
from .exr import MultiLayer, Pixels
from .jobspec import JobSpec
from .tiling import Rect


@dataclass(frozen=True)
class Tolerance:
    """A value passes within ``atol + rtol * |value|``; a check fails when more than
    ``max_outliers`` of the checked pixels have a value outside."""

    rtol: float
    atol: float
    max_outliers: float


CPU_TOLERANCE = Tolerance(rtol=2e-3, atol=1e-5, max_outliers=0.01)
# Calibration constant, measured by tools/gpu_check.py (">gpu tol" column, GPU vs CPU).
GPU_TOLERANCE = Tolerance(rtol=1e-2, atol=1e-4, max_outliers=0.05)
RTOL, ATOL, MAX_OUTLIERS = CPU_TOLERANCE.rtol, CPU_TOLERANCE.atol, CPU_TOLERANCE.max_outliers


def tolerance_for(spec: JobSpec) -> Tolerance:
    """The tolerance a unit's result is checked with: its device decides."""
    return CPU_TOLERANCE if spec.device == "CPU" else GPU_TOLERANCE
# Many small patches rather than a few big ones: a lazy result is often wrong in one region
# only (a wrong frame differs where something moved). On the test scene's worst tile, where
# a wrong frame changes 26 % of the pixels in one corner, 8 patches of 6 px caught it in
# 98.5-99.3 % of checks, 12 of 5 px in 99.9 %.
PATCHES = 12
PATCH_SIZE = 5
DENOISING_PASSES = ("Denoising Normal", "Denoising Albedo", "Denoising Depth")
MAX_EVIDENCE = 12_000  # characters in the dispute message (the exchange's body is 16 KB)
EVIDENCE_BLOCKS = 2  # worst patches whose exact pixels ride in the dispute message


def check_passes(image: MultiLayer, spec: JobSpec) -> None:
    """Refuse a result without the passes the buyer needs, or with foreign ones."""
    names = {p.name for p in image.parts}
    if len(names) != len(image.parts):
        raise ResultRejected("result repeats a pass")
    for part in image.parts:
        layer = next((v for v in spec.view_layers if part.name.startswith(v + ".")), None)
        if layer is None:
            raise ResultRejected(f"result has a pass {part.name!r} of no requested view layer")
        if any(not c.startswith(part.name + ".") for c in part.channels):
            raise ResultRejected(f"pass {part.name!r} has foreign channels")
    needed = ["Combined", *(DENOISING_PASSES if spec.denoise else ())]
    for layer in spec.view_layers:
        missing = [n for n in needed if f"{layer}.{n}" not in names]
        if missing:
            raise ResultRejected(f"result lacks passes {missing} of view layer {layer!r}")
        combined = image.part(f"{layer}.Combined")
        if sorted(c.rsplit(".", 1)[-1] for c in combined.channels) != ["A", "B", "G", "R"]:
            raise ResultRejected(f"{layer}.Combined is not RGBA")


def layout(image: MultiLayer) -> list[tuple[str, list[str]]]:
    return [(p.name, sorted(p.channels)) for p in image.parts]


def pick_patches(rect: Rect, count: int = PATCHES, size: int = PATCH_SIZE,
                 rng: secrets.SystemRandom | None = None) -> list[Rect]:
    """``count`` distinct random ``size``-square patches inside ``rect`` (frame coordinates),
    from a cryptographic source; fewer when the unit is too small to hold them."""
    rng = rng or secrets.SystemRandom()
    w, h = min(size, rect.width), min(size, rect.height)
    cols, rows = rect.width - w + 1, rect.height - h + 1
    chosen: list[Rect] = []
    for _ in range(count * 20):
        if len(chosen) == count:
            break
        x, y = rect.x0 + rng.randrange(cols), rect.y0 + rng.randrange(rows)
        patch = Rect(x, x + w, y, y + h)
        if all(not _overlap(patch, other) for other in chosen):
            chosen.append(patch)
    return chosen


def _overlap(a: Rect, b: Rect) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


@dataclass(frozen=True)
class PatchDiff:
    """How the seller's pixels of one patch compare with the buyer's own render."""

    patch: Rect
    pixels: int
    outliers: int  # pixels with a value outside the tolerance (or not finite)
    max_rel: float  # largest |a - b| / max(|b|, ATOL) over every value

    @property
    def exact(self) -> bool:
        return self.max_rel == 0.0


def compare(seller: MultiLayer, buyer: MultiLayer, patch: Rect,
            tolerance: Tolerance = CPU_TOLERANCE) -> PatchDiff:
    """``seller`` and ``buyer`` are the patch's pixels, pass for pass (same layout)."""
    if layout(seller) != layout(buyer):
        raise ResultRejected("result's passes differ from the buyer's own render",
                             seller=layout(seller)[:8], buyer=layout(buyer)[:8])
    bad = np.zeros((patch.height, patch.width), dtype=bool)
    worst = 0.0
    for ours, theirs in zip(buyer.parts, seller.parts, strict=True):
        a, b = _by_channel(theirs.channels, theirs.pixels), _by_channel(ours.channels,
                                                                        ours.pixels)
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            limit = tolerance.atol + tolerance.rtol * np.abs(b.astype(np.float64))
            outside = ~(diff <= limit)  # NaN and inf count as outside
            rel = diff / np.maximum(np.abs(b.astype(np.float64)), tolerance.atol)
        bad |= outside.any(axis=2)
        finite = rel[np.isfinite(rel)]
        worst = max(worst, float(finite.max()) if finite.size else 0.0,
                    float("inf") if not np.isfinite(rel).all() else 0.0)
    return PatchDiff(patch, patch.pixels, int(bad.sum()), worst)


def _by_channel(names: list[str], pixels: Pixels) -> Pixels:
    """Channels in name order, so files that store them differently still line up."""
    order = sorted(range(len(names)), key=names.__getitem__)
    return pixels[..., order]


def failed(diffs: list[PatchDiff], tolerance: Tolerance = CPU_TOLERANCE) -> bool:
    checked = sum(d.pixels for d in diffs)
    return sum(d.outliers for d in diffs) > tolerance.max_outliers * checked


def summary(diffs: list[PatchDiff], tolerance: Tolerance = CPU_TOLERANCE) -> str:
    outliers, checked = sum(d.outliers for d in diffs), sum(d.pixels for d in diffs)
    worst = max((d.max_rel for d in diffs), default=0.0)
    exact = sum(d.exact for d in diffs)
    return (f"spot check: {outliers} of {checked} pixels in {len(diffs)} secret patches "
            f"differ from the buyer's own render (worst relative difference {worst:.3g}, "
            f"{exact} patches exact; tolerance {tolerance.rtol:g} relative, "
            f"{tolerance.max_outliers:.0%} of pixels)")


@dataclass(frozen=True)
class Evidence:
    """What a disputed result is judged on: the result's hashes, every patch's coordinates
    and difference, and both pixel blocks (the worst ones travel exactly in the dispute
    message; all of them stay with the buyer)."""

    resulthash: str  # SHA-256 of the decrypted result file
    encresulthash: str  # what the buyer's receipt signed
    diffs: list[PatchDiff]
    seller_blocks: list[MultiLayer]
    buyer_blocks: list[MultiLayer]
    tolerance: Tolerance = CPU_TOLERANCE

    def full(self) -> dict[str, object]:
        """Everything, for the buyer's evidence file."""
        return {"resulthash": self.resulthash, "encresulthash": self.encresulthash,
                "tolerance": {"rtol": self.tolerance.rtol, "atol": self.tolerance.atol,
                              "max_outliers": self.tolerance.max_outliers},
                "patches": [self._patch(i, True) for i in range(len(self.diffs))]}

    def field(self) -> str:
        """The compact JSON for the dispute message, at most ``MAX_EVIDENCE`` characters."""
        order = sorted(range(len(self.diffs)), key=lambda i: -self.diffs[i].outliers)
        for blocks in range(EVIDENCE_BLOCKS, -1, -1):
            data = {"v": 1, "resulthash": self.resulthash, "encresulthash": self.encresulthash,
                    "rtol": self.tolerance.rtol, "patches": [self._patch(i, i in order[:blocks])
                                              for i in range(len(self.diffs))]}
            text = json.dumps(data, separators=(",", ":"), sort_keys=True)
            if len(text) <= MAX_EVIDENCE:
                return text
        return json.dumps({"v": 1, "resulthash": self.resulthash})

    def _patch(self, i: int, blocks: bool) -> dict[str, object]:
        d = self.diffs[i]
        out: dict[str, object] = {"rect": [d.patch.x0, d.patch.x1, d.patch.y0, d.patch.y1],
                                  "outliers": d.outliers, "max_rel": _finite(d.max_rel)}
        if blocks:
            out["pass"] = self.buyer_blocks[i].parts[0].name
            out["seller"] = _block(self.seller_blocks[i])
            out["buyer"] = _block(self.buyer_blocks[i])
        return out


def _finite(value: float) -> float | str:
    return value if np.isfinite(value) else "inf"


def _block(image: MultiLayer) -> str:
    """The first pass's float32 pixels (rows bottom-up, channels by name), zlib, base64url."""
    part = image.parts[0]
    raw = np.ascontiguousarray(_by_channel(part.channels, part.pixels), dtype="<f4").tobytes()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")


def decode_block(text: str, width: int, height: int, channels: int) -> Pixels:
    """The pixels of one evidence block (for whoever judges a dispute)."""
    raw = zlib.decompress(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)),
                          bufsize=width * height * channels * 4)
    return np.frombuffer(raw, dtype="<f4").reshape(height, width, channels)


def result_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
