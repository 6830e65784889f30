"""Cycles compute devices: detect them, choose one, and make sure Cycles really uses it.

Detection runs in the render worker (under ``bpy``, inside its sandbox) through the Cycles
add-on's preferences: ``refresh_devices()`` then ``get_devices_for_type(backend)`` for each
GPU backend. Cycles does not report device memory; for CUDA/OptiX cards it is read from the
driver (``libcuda``'s ``cuDeviceTotalMem``) when that library loads, else left unknown.

The classic failure of every render farm is a scene set to GPU that renders on the CPU:
in a fresh Blender (module mode never loads saved preferences) the compute backend is
``NONE`` and Cycles silently falls back. :func:`use_gpu` therefore sets the backend and the
exact devices, then reads the preferences back (:func:`check_selection`), and
:func:`check_render_stats` looks at what Cycles reported while rendering.

Tests and machines without a GPU use a fake device list: ``BITWRK_FAKE_GPUS`` holds a JSON
list of ``{"backend", "name", "id", "memory"}`` objects; detection then returns those and
the worker renders on the CPU (everything but the render itself takes the GPU path).

This module never imports ``bpy``; the functions that need it take it as an argument.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from ..render import compat
from ..render.errors import RenderError

# Preference order when a seller says just "gpu": OptiX is NVIDIA's fastest path.
BACKENDS = ("OPTIX", "CUDA", "HIP", "METAL", "ONEAPI")
FAKE_ENV = "BITWRK_FAKE_GPUS"
# Device nodes a backend's driver opens, by glob-free prefix: /dev/<prefix>*.
NODE_PREFIXES = {"OPTIX": ("nvidia",), "CUDA": ("nvidia",), "HIP": ("kfd", "dri/renderD"),
                 "ONEAPI": ("dri/renderD",), "METAL": ()}
# Status lines Cycles shows on a backend's device and never on the CPU (the CPU too shows
# "Loading render kernels"). Cycles' OptiXDevice::build_bvh sets the substatus "Building
# OptiX acceleration structure" whenever it syncs geometry; for the other backends no such
# line is known: tools/gpu_check.py prints the lines seen only on the GPU.
GPU_STATUS_MARKERS: dict[str, tuple[str, ...]] = {
    "OPTIX": ("building optix acceleration structure",)}
_ERROR_LINE = re.compile(r"^([a-z]+ )?error\s*:")
_NAMED = ("synchronizing", "loading ", "updating geometry bvh ")
OOM_MARKERS = ("out of memory", "out of gpu memory", "out_of_memory",
               "hiperroroutofmemory", "failed to allocate")


class DeviceError(RenderError):
    """The chosen compute device is missing, not usable, or Cycles did not use it."""

    code = "device_unavailable"


class CpuFallback(DeviceError):
    """A GPU was chosen but Cycles rendered (or would render) on the CPU."""

    code = "gpu_not_used"


class DeviceOutOfMemory(DeviceError):
    """The unit does not fit in the GPU's memory: a refusal, not a broken seller."""

    code = "device_out_of_memory"


@dataclass(frozen=True)
class Device:
    """One Cycles compute device: ``backend`` is Cycles' type (``OPTIX``, ``CUDA``...)."""

    backend: str
    name: str
    id: str
    memory: int | None = None  # bytes, when known

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Device:
        if not isinstance(data, dict):
            raise DeviceError("a device must be a JSON object")
        backend, name = data.get("backend"), data.get("name")
        memory = data.get("memory")
        if backend not in BACKENDS or not isinstance(name, str) or not name:
            raise DeviceError(f"bad device {data!r}: backend one of {list(BACKENDS)}, a name")
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int)):
            raise DeviceError(f"bad device memory {memory!r}")
        return cls(backend, name, str(data.get("id") or f"{backend}_{name}"), memory)

    def describe(self) -> str:
        size = f", {self.memory / 2**30:.1f} GiB" if self.memory else ""
        return f"{self.backend} {self.name}{size}"


@dataclass(frozen=True)
class DeviceChoice:
    """What a seller asked for: ``cpu``, ``gpu``, ``gpu:N``, ``gpu:optix``, ``gpu:cuda:1``."""

    gpu: bool
    backend: str | None = None  # None: the first backend (in BACKENDS order) with devices
    index: int | None = None  # None: every device of the backend

    @classmethod
    def parse(cls, text: str) -> DeviceChoice:
        parts = text.strip().lower().split(":")
        if parts == ["cpu"]:
            return cls(False)
        if parts[0] != "gpu" or len(parts) > 3:
            raise DeviceError(f"device must be cpu, gpu, gpu:N, gpu:BACKEND or gpu:BACKEND:N,"
                              f" not {text!r}")
        backend, index = None, None
        for part in parts[1:]:
            if part.isdigit() and index is None:
                index = int(part)
            elif part.upper() in BACKENDS and backend is None and index is None:
                backend = part.upper()
            else:
                raise DeviceError(f"bad device {text!r}: backends are "
                                  f"{', '.join(b.lower() for b in BACKENDS)}")
        return cls(True, backend, index)

    def __str__(self) -> str:
        if not self.gpu:
            return "cpu"
        return ":".join(["gpu", *([self.backend.lower()] if self.backend else []),
                         *([str(self.index)] if self.index is not None else [])])


CPU = DeviceChoice(False)


def fake_devices() -> list[Device] | None:
    """The fake device list from ``BITWRK_FAKE_GPUS``, or None when it is not set."""
    text = os.environ.get(FAKE_ENV)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DeviceError(f"{FAKE_ENV} is not JSON: {exc}") from None
    if not isinstance(data, list):
        raise DeviceError(f"{FAKE_ENV} must be a JSON list of devices")
    return [Device.from_json(d) for d in data]


def cycles_prefs(bpy: Any) -> Any:
    return bpy.context.preferences.addons["cycles"].preferences


def list_devices(bpy: Any) -> list[Device]:
    """Every GPU device Cycles can use here, OptiX first (fakes when configured)."""
    fakes = fake_devices()
    if fakes is not None:
        return fakes
    prefs = cycles_prefs(bpy)
    prefs.refresh_devices()
    memory = cuda_memory()
    found = []
    for backend in BACKENDS:
        entries = [e for e in prefs.get_devices_for_type(backend) if e.type == backend]
        for i, entry in enumerate(entries):
            size = memory[i] if backend in ("CUDA", "OPTIX") and i < len(memory) else None
            found.append(Device(backend, entry.name, entry.id, size))
    return found


def cuda_memory() -> list[int]:
    """Total memory of each CUDA device in the driver's order; [] when unknown.

    Cycles lists CUDA/OptiX devices in the driver's order, so index i matches index i.
    """
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
        if cuda.cuInit(0) != 0:
            return []
        count = ctypes.c_int()
        if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return []
        sizes = []
        for i in range(count.value):
            handle, size = ctypes.c_int(), ctypes.c_size_t()
            if cuda.cuDeviceGet(ctypes.byref(handle), i) != 0:
                return []
            if cuda.cuDeviceTotalMem_v2(ctypes.byref(size), handle) != 0:
                return []
            sizes.append(int(size.value))
        return sizes
    except (OSError, AttributeError):
        return []


def pick(devices: list[Device], choice: DeviceChoice) -> list[Device]:
    """The devices ``choice`` names among ``devices``; :class:`DeviceError` if none."""
    if not choice.gpu:
        return []
    backends = [choice.backend] if choice.backend else list(BACKENDS)
    for backend in backends:
        of_backend = [d for d in devices if d.backend == backend]
        if not of_backend:
            continue
        if choice.index is None:
            return of_backend
        if choice.index < len(of_backend):
            return [of_backend[choice.index]]
        raise DeviceError(f"no {backend} device {choice.index}: this machine has "
                          f"{len(of_backend)}", devices=[d.describe() for d in devices])
    raise DeviceError(f"no GPU for {choice}: Cycles finds "
                      f"{', '.join(d.describe() for d in devices) or 'none'}",
                      devices=[d.describe() for d in devices])


def device_nodes(backend: str | None, dev: str = "/dev") -> list[str]:
    """The ``/dev`` nodes ``backend``'s driver needs that exist here (none for the CPU)."""
    if backend is None:
        return []
    found: list[str] = []
    for prefix in NODE_PREFIXES.get(backend, ()):
        folder, _sep, stem = prefix.rpartition("/")
        base = os.path.join(dev, folder) if folder else dev
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        found += [os.path.join(base, n) for n in names if n.startswith(stem)
                  and not os.path.isdir(os.path.join(base, n))]
    return found


def use_cpu(bpy: Any, scene: Any) -> None:
    compat.assign(scene.cycles, device="CPU")


def use_gpu(bpy: Any, scene: Any, chosen: list[Device]) -> None:
    """Make Cycles render ``scene`` on exactly ``chosen`` (one backend), CPU off."""
    if not chosen:
        raise DeviceError("no GPU device chosen")
    backend = chosen[0].backend
    prefs = cycles_prefs(bpy)
    compat.assign(prefs, compute_device_type=backend)
    ids = {d.id for d in chosen}
    for entry in prefs.get_devices_for_type(backend):
        compat.assign(entry, use=entry.id in ids)  # the CPU entry too: no hybrid CPU+GPU tiles
    compat.assign(scene.cycles, device="GPU")
    check_selection(backend, [(e.type, e.id, bool(e.use)) for e in prefs.devices],
                    prefs.compute_device_type, scene.cycles.device, ids)


def check_selection(backend: str, entries: list[tuple[str, str, bool]], compute_type: str,
                    scene_device: str, ids: set[str]) -> None:
    """Refuse unless Cycles is set to render on exactly the chosen GPU devices.

    ``entries`` are the preferences' devices as (type, id, use). Any mismatch means the
    render would fall back to (or mix in) the CPU.
    """
    if scene_device != "GPU" or compute_type != backend:
        raise CpuFallback(f"GPU chosen but Cycles is set to {scene_device} with backend "
                          f"{compute_type}: it would render on the CPU")
    used = {i for t, i, use in entries if use and t == backend}
    if used != ids:
        raise CpuFallback(f"GPU chosen but Cycles would use {sorted(used) or 'no device'} "
                          f"instead of {sorted(ids)}", backend=backend)
    if any(use and t == "CPU" for t, _i, use in entries):
        raise CpuFallback("the CPU is enabled next to the GPU", backend=backend)


def cycles_segments(stats: list[str]) -> list[str]:
    """The ``|``-separated parts of status lines that are Cycles' own words.

    Names from the buyer's scene appear in some parts ("Synchronizing object | NAME",
    "Loading NAME.png", "Updating Geometry BVH NAME 1/3"); those are dropped, so a scene
    cannot fake an error or the GPU's marker by naming an object.
    """
    found = []
    for line in stats:
        named_next = False
        for part in (p.strip() for p in line.split("|")):
            low = part.lower()
            if named_next or low.startswith(_NAMED):
                named_next = low.startswith("synchronizing")
                continue
            found.append(part)
    return found


def check_render_stats(stats: list[str], backend: str) -> bool | None:
    """Look at Cycles' status lines of one GPU render on ``backend``.

    An out-of-memory message is a clean refusal (:class:`DeviceOutOfMemory`); any other
    error line is a :class:`DeviceError`. Returns whether a line shows the GPU at work
    (:data:`GPU_STATUS_MARKERS`; None where no marker is known for the backend).
    """
    parts = cycles_segments(stats)
    lowered = [p.lower() for p in parts]
    oom = [p for p, low in zip(parts, lowered, strict=True) if any(m in low for m in OOM_MARKERS)]
    if oom:
        raise DeviceOutOfMemory("the unit does not fit in the GPU's memory", status=oom[-1][:200])
    errors = [p for p, low in zip(parts, lowered, strict=True) if _ERROR_LINE.search(low)]
    if errors:
        raise DeviceError(f"the GPU render failed: {errors[-1][:200]}")
    markers = GPU_STATUS_MARKERS.get(backend, ())
    if not markers:
        return None
    return any(m in low for low in lowered for m in markers)


def classify_failure(message: str) -> DeviceError | None:
    """The device error a failed GPU render's message means, if any (OOM first)."""
    lowered = message.lower()
    if any(m in lowered for m in OOM_MARKERS):
        return DeviceOutOfMemory("the unit does not fit in the GPU's memory",
                                 status=message[:200])
    if any(m in lowered for m in ("cuda", "optix", "hip", "oneapi", "metal", "device")):
        return DeviceError(f"the GPU render failed: {message[:200]}")
    return None


@dataclass
class GpuSession:
    """A worker's GPU: the devices it renders on, set up again for every unit.

    With fake devices (``BITWRK_FAKE_GPUS``) the unit renders on the CPU and nothing is
    claimed about the stats. ``evidence`` is what the last cold unit's stats showed.
    """

    chosen: list[Device]
    fake: bool = False
    evidence: bool | None = None

    @property
    def backend(self) -> str:
        return self.chosen[0].backend

    def setup(self, bpy: Any, scene: Any) -> None:
        if self.fake:
            use_cpu(bpy, scene)
        else:
            use_gpu(bpy, scene, self.chosen)

    def failed(self, message: str) -> DeviceError | None:
        return None if self.fake else classify_failure(message)

    def rendered(self, stats: list[str], cold: bool) -> None:
        """Check one unit's status lines. A cold unit (scene just synced: kernels, BVH)
        must show the GPU at work where the backend's marker is known; else the GPU was
        chosen but the CPU rendered, and the unit is refused."""
        if self.fake:
            return
        seen = check_render_stats(stats, self.backend)
        if cold:
            self.evidence = seen
            if seen is False:
                raise CpuFallback(f"{self.backend} chosen but Cycles' status never showed the "
                                  "GPU at work: it rendered on the CPU", backend=self.backend)


def open_session(bpy: Any, choice: DeviceChoice) -> tuple[GpuSession | None, list[Device]]:
    """The worker's GPU session for ``choice`` and the devices found; for the CPU, None and
    no search at all (a CPU worker starts as it always did)."""
    if not choice.gpu:
        return None, []
    found = list_devices(bpy)
    return GpuSession(pick(found, choice), fake=fake_devices() is not None), found
