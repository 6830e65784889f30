"""Cycles' own OIDN denoise, replayed on a stitched frame so it matches a local render.

Blender's in-render denoiser (``intern/cycles/integrator/denoiser_oidn.cpp``) does, for a
frame without adaptive sampling:

1. hand OIDN the **un-normalised** colour sum (Combined x N), rows **bottom-up**;
2. with prefilter ACCURATE, first denoise albedo and normal in place with their own
   ``RT`` filters (quality set, no ``hdr``);
3. run the beauty ``RT`` filter with ``hdr=1, srgb=0, cleanAux=1`` (cleanAux only for
   prefilter NONE or ACCURATE), the scene's quality, device option ``setAffinity=0``;
4. scale the output by ``1/N`` and keep the noisy alpha.

With adaptive sampling Cycles feeds the colour already normalised per pixel and scales
the output back by each pixel's sample count; the normalised output is then what we
keep (equal to Cycles' up to one float rounding). Blender ships OIDN as
``libOpenImageDenoise.so.2`` next to its own libraries; this module calls its C API with
ctypes, so no extra package is needed. Measured (docs/measured-facts.md R2): bit-identical
to the in-render result for power-of-two sample counts, <= 2.5e-6 otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import ComposeError

_DEVICE_CPU = 1
_FORMAT_FLOAT3 = 3
QUALITY = {"FAST": 4, "BALANCED": 5, "HIGH": 6}  # OIDNQuality in oidn.h (2.3)
PREFILTERS = ("NONE", "FAST", "ACCURATE")
Image = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DenoiseSettings:
    """The scene's denoiser settings (``scene.cycles.denoising_*``) that shape the result."""

    input_passes: str = "RGB_ALBEDO_NORMAL"  # RGB | RGB_ALBEDO | RGB_ALBEDO_NORMAL
    prefilter: str = "ACCURATE"  # NONE | FAST | ACCURATE
    quality: str = "HIGH"  # HIGH | BALANCED | FAST
    adaptive: bool = False  # scene.cycles.use_adaptive_sampling

    def __post_init__(self) -> None:
        if self.input_passes not in ("RGB", "RGB_ALBEDO", "RGB_ALBEDO_NORMAL"):
            raise ComposeError(f"unknown denoising input passes {self.input_passes!r}")
        if self.prefilter not in PREFILTERS or self.quality not in QUALITY:
            raise ComposeError(f"unknown denoiser setting {self.prefilter}/{self.quality}")


def _library_names() -> list[str]:
    names = {"linux": ["libOpenImageDenoise.so.2"], "darwin": ["libOpenImageDenoise.2.dylib"],
             "win32": ["OpenImageDenoise.dll"]}.get(sys.platform, [])
    spec = importlib.util.find_spec("bpy")
    if spec is not None and spec.origin is not None:  # the bpy wheel: bpy/lib/
        names += [str(Path(spec.origin).parent / "lib" / n) for n in list(names)]
    found = ctypes.util.find_library("OpenImageDenoise")
    return names + ([found] if found else [])


def load_library() -> ctypes.CDLL:
    """Blender's OIDN (already loaded in a Blender process, else found beside bpy)."""
    errors = []
    for name in _library_names():
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
            continue
        _declare(lib)
        return lib
    raise ComposeError("OpenImageDenoise library not found", tried=errors)


def _declare(lib: ctypes.CDLL) -> None:
    p, s, b, i, z = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_bool, ctypes.c_int, ctypes.c_size_t
    for name, res, args in (
        ("oidnNewDevice", p, [i]), ("oidnSetDeviceBool", None, [p, s, b]),
        ("oidnCommitDevice", None, [p]), ("oidnReleaseDevice", None, [p]),
        ("oidnGetDeviceError", i, [p, ctypes.POINTER(ctypes.c_char_p)]),
        ("oidnNewFilter", p, [p, s]), ("oidnSetFilterBool", None, [p, s, b]),
        ("oidnSetFilterInt", None, [p, s, i]),
        ("oidnSetSharedFilterImage", None, [p, s, p, i, z, z, z, z, z]),
        ("oidnCommitFilter", None, [p]), ("oidnExecuteFilter", None, [p]),
        ("oidnReleaseFilter", None, [p]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args


class _Device:
    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.handle = lib.oidnNewDevice(_DEVICE_CPU)
        if not self.handle:
            raise ComposeError("OIDN could not create a CPU device")
        lib.oidnSetDeviceBool(self.handle, b"setAffinity", False)
        lib.oidnCommitDevice(self.handle)
        self.check()

    def check(self) -> None:
        message = ctypes.c_char_p()
        if self.lib.oidnGetDeviceError(self.handle, ctypes.byref(message)):
            text = (message.value or b"").decode(errors="replace")
            raise ComposeError(f"OIDN error: {text}")

    def run(self, images: dict[str, Image], flags: dict[str, bool], quality: int) -> None:
        """One ``RT`` filter over same-sized contiguous float32 (H, W, 3) arrays."""
        lib = self.lib
        handle = lib.oidnNewFilter(self.handle, b"RT")
        try:
            for name, array in images.items():
                height, width, _ = array.shape
                lib.oidnSetSharedFilterImage(handle, name.encode(), array.ctypes.data,
                                             _FORMAT_FLOAT3, width, height, 0, 0, 0)
            for key, value in flags.items():
                lib.oidnSetFilterBool(handle, key.encode(), value)
            lib.oidnSetFilterInt(handle, b"quality", quality)
            lib.oidnCommitFilter(handle)
            lib.oidnExecuteFilter(handle)
            self.check()
        finally:
            lib.oidnReleaseFilter(handle)

    def close(self) -> None:
        self.lib.oidnReleaseDevice(self.handle)


def _rgb(array: Image) -> Image:
    return np.ascontiguousarray(array[..., :3], dtype=np.float32)


def denoise(combined: Image, albedo: Image | None, normal: Image | None, samples: int,
            settings: DenoiseSettings, lib: ctypes.CDLL | None = None) -> Image:
    """Denoise a stitched frame as Cycles would have; arrays (H, W, C), rows bottom-up.

    ``combined`` is the noisy RGBA Combined pass as Blender saves it (normalised by the
    sample count); returns RGBA with the noisy alpha.
    """
    if samples < 1:
        raise ComposeError("sample count must be positive", samples=samples)
    quality = QUALITY[settings.quality]
    use_albedo = settings.input_passes in ("RGB_ALBEDO", "RGB_ALBEDO_NORMAL")
    use_normal = settings.input_passes == "RGB_ALBEDO_NORMAL"
    if (use_albedo and albedo is None) or (use_normal and normal is None):
        raise ComposeError("denoising passes missing from the tiles")
    scale = not settings.adaptive and samples != 1
    color = _rgb(combined)
    if scale:  # the un-normalised sum Cycles keeps in its buffers
        color = np.ascontiguousarray(color * np.float32(samples), dtype=np.float32)
    guides: dict[str, Image] = {}
    if use_albedo and albedo is not None:
        guides["albedo"] = _rgb(albedo)
    if use_normal and normal is not None:
        guides["normal"] = _rgb(normal)
    output = np.empty_like(color)
    device = _Device(lib or load_library())
    try:
        if settings.prefilter == "ACCURATE":
            for name, aux in guides.items():
                device.run({name: aux, "output": aux}, {}, quality)
        clean = settings.prefilter in ("NONE", "ACCURATE")
        device.run({"color": color, **guides, "output": output},
                   {"hdr": True, "srgb": False, **({"cleanAux": True} if clean else {})}, quality)
    finally:
        device.close()
    if scale:
        output *= np.float32(1.0) / np.float32(samples)
    result = np.empty(combined.shape, dtype=np.float32)
    result[..., :3] = output
    if combined.shape[-1] > 3:
        result[..., 3:] = combined[..., 3:]
    return result
