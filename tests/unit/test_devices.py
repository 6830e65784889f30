"""GPU devices on fakes: choosing, detection checks, sandbox nodes, articles, the buyer's
choice and the GPU tolerance (no bpy, no GPU; the real-process side is in
tests/blender/test_gpu_devices.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bitwrk.articles import Article, article_id, parse_article
from bitwrk.buy import check_gpu, plan
from bitwrk.errors import BitwrkError, UnknownArticle
from bitwrk.render import verify
from bitwrk.render.exr import MultiLayer, Part
from bitwrk.render.jobspec import JobSpec
from bitwrk.render.tiling import Rect
from bitwrk.seller import devices
from bitwrk.seller.devices import (
    CpuFallback,
    Device,
    DeviceChoice,
    DeviceError,
    DeviceOutOfMemory,
)
from bitwrk.seller.sandbox import Sandbox

H200 = [Device("OPTIX", "NVIDIA H200", "OPTIX_0", 141 << 30),
        Device("OPTIX", "NVIDIA L4", "OPTIX_1", 24 << 30),
        Device("CUDA", "NVIDIA H200", "CUDA_0", 141 << 30),
        Device("CUDA", "NVIDIA L4", "CUDA_1", 24 << 30)]


@pytest.mark.parametrize(("text", "choice"), [
    ("cpu", DeviceChoice(False)), ("CPU", DeviceChoice(False)),
    ("gpu", DeviceChoice(True)), ("gpu:1", DeviceChoice(True, None, 1)),
    ("gpu:optix", DeviceChoice(True, "OPTIX")), ("gpu:cuda:1", DeviceChoice(True, "CUDA", 1)),
    ("GPU:HIP", DeviceChoice(True, "HIP")),
])
def test_device_choices_parse_and_print_back(text: str, choice: DeviceChoice) -> None:
    assert DeviceChoice.parse(text) == choice
    assert DeviceChoice.parse(str(choice)) == choice


@pytest.mark.parametrize("text", ["", "tpu", "gpu:", "gpu:vulkan", "gpu:1:cuda", "gpu:-1",
                                  "gpu:cuda:optix", "cpu:0", "gpu:1:2"])
def test_bad_device_choices_are_refused(text: str) -> None:
    with pytest.raises(DeviceError):
        DeviceChoice.parse(text)


def test_fake_device_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(devices.FAKE_ENV, raising=False)
    assert devices.fake_devices() is None
    monkeypatch.setenv(devices.FAKE_ENV, json.dumps([d.to_json() for d in H200]))
    assert devices.fake_devices() == H200
    assert devices.list_devices(bpy=None) == H200  # fakes: bpy is never touched
    for bad in ("not json", '{"backend": "CUDA"}', '[{"backend": "VULKAN", "name": "x"}]',
                '[{"backend": "CUDA", "name": "x", "memory": "lots"}]'):
        monkeypatch.setenv(devices.FAKE_ENV, bad)
        with pytest.raises(DeviceError):
            devices.fake_devices()


def test_pick_prefers_optix_and_honours_backend_and_index() -> None:
    assert devices.pick(H200, DeviceChoice(True)) == H200[:2]
    assert devices.pick(H200, DeviceChoice(True, None, 1)) == [H200[1]]
    assert devices.pick(H200, DeviceChoice(True, "CUDA")) == H200[2:]
    assert devices.pick(H200, DeviceChoice(True, "CUDA", 0)) == [H200[2]]
    assert devices.pick(H200, devices.CPU) == []
    with pytest.raises(DeviceError, match="no CUDA device 2"):
        devices.pick(H200, DeviceChoice(True, "CUDA", 2))
    with pytest.raises(DeviceError, match="no GPU for gpu:hip"):
        devices.pick(H200, DeviceChoice(True, "HIP"))
    with pytest.raises(DeviceError, match="finds none"):
        devices.pick([], DeviceChoice(True))


def test_selection_check_catches_every_cpu_fallback() -> None:
    entries = [("CUDA", "CUDA_0", True), ("CUDA", "CUDA_1", False), ("CPU", "CPU", False)]
    devices.check_selection("CUDA", entries, "CUDA", "GPU", {"CUDA_0"})
    cases = [
        ("CUDA", entries, "NONE", "GPU", {"CUDA_0"}),  # a fresh Blender's preferences
        ("CUDA", entries, "CUDA", "CPU", {"CUDA_0"}),  # the scene left on the CPU
        ("CUDA", [("CUDA", "CUDA_0", False)], "CUDA", "GPU", {"CUDA_0"}),  # nothing enabled
        ("CUDA", entries, "CUDA", "GPU", {"CUDA_1"}),  # another card than chosen
        ("CUDA", [*entries[:2], ("CPU", "CPU", True)], "CUDA", "GPU", {"CUDA_0"}),  # + CPU
        ("OPTIX", entries, "OPTIX", "GPU", {"OPTIX_0"}),  # a backend with no devices
    ]
    for backend, listed, compute, scene_device, ids in cases:
        with pytest.raises(CpuFallback):
            devices.check_selection(backend, listed, compute, scene_device, ids)


def test_render_stats_out_of_memory_errors_and_gpu_evidence() -> None:
    synced = ["Updating Scene BVH | Building OptiX acceleration structure", "Sample 16/16"]
    assert devices.check_render_stats(synced, "OPTIX") is True
    assert devices.check_render_stats(["Updating Scene BVH | Building BVH"], "OPTIX") is False
    assert devices.check_render_stats(synced, "CUDA") is None  # no marker known: no claim
    with pytest.raises(DeviceOutOfMemory):
        devices.check_render_stats(["Error: CUDA error: Out of memory in cuMemAlloc"], "CUDA")
    with pytest.raises(DeviceOutOfMemory):
        devices.check_render_stats(["System is out of GPU memory"], "OPTIX")
    with pytest.raises(DeviceError, match="Illegal address"):
        devices.check_render_stats(["Mem: 2M | Error: Illegal address"], "CUDA")
    # names from the scene are never read as Cycles' words: no fake error, OOM or marker
    named = ["Mem: 0M | Synchronizing object | Error: fake", "Synchronizing object | ErrorCube",
             "Updating Images | Loading out of memory.png",
             "Mem: 1M | Synchronizing object | Building OptiX acceleration structure",
             "Updating Geometry BVH error: x 1/2 | Building BVH"]
    assert devices.check_render_stats(named, "CUDA") is None
    assert devices.check_render_stats(named, "OPTIX") is False


def test_gpu_session_refuses_a_cold_unit_the_gpu_never_rendered() -> None:
    gpu = devices.GpuSession([H200[0]])
    with pytest.raises(CpuFallback, match="rendered on the CPU"):
        gpu.rendered(["Updating Scene BVH | Building BVH", "Finished"], cold=True)
    gpu.rendered(["Sample 16/16"], cold=False)  # warm: the scene is already on the device
    gpu.rendered(["Building OptiX acceleration structure"], cold=True)
    assert gpu.evidence is True
    fake = devices.GpuSession([H200[0]], fake=True)
    fake.rendered(["Building BVH"], cold=True)  # fakes render on the CPU by design
    assert fake.failed("CUDA error: Out of memory") is None
    assert isinstance(gpu.failed("CUDA error: Out of memory"), DeviceOutOfMemory)
    assert isinstance(gpu.failed("OptiX error: launch failed"), DeviceError)
    assert gpu.failed("Image too small") is None


def test_device_nodes_per_backend(tmp_path: Path) -> None:
    for name in ("nvidia0", "nvidiactl", "nvidia-uvm", "kfd", "null", "dri/renderD128",
                 "dri/card0"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "nvidia-caps").mkdir()  # a folder is never bound as a node
    dev = str(tmp_path)
    assert devices.device_nodes("CUDA", dev) == [f"{dev}/nvidia-uvm", f"{dev}/nvidia0",
                                                 f"{dev}/nvidiactl"]
    assert devices.device_nodes("OPTIX", dev) == devices.device_nodes("CUDA", dev)
    assert devices.device_nodes("HIP", dev) == [f"{dev}/kfd", f"{dev}/dri/renderD128"]
    assert devices.device_nodes("ONEAPI", dev) == [f"{dev}/dri/renderD128"]
    assert devices.device_nodes(None, dev) == []
    assert devices.device_nodes("METAL", dev) == []


def test_sandbox_passes_only_the_given_device_nodes(tmp_path: Path) -> None:
    box = Sandbox("bwrap", "/usr/bin/bwrap")
    plain = box.wrap(["/bin/true"], tmp_path, {}, [])
    assert "--dev-bind-try" not in plain and "--dev-bind" not in plain
    nodes = ["/dev/nvidia0", "/dev/nvidiactl"]
    argv = box.wrap(["/bin/true"], tmp_path, {}, [], device_nodes=nodes)
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--dev-bind-try"]
    assert binds == nodes
    assert argv.index("--dev-bind-try") > argv.index("--dev")  # on top of the minimal /dev
    for bad in (["/home/me/.ssh"], ["/dev/../etc"]):
        with pytest.raises(ValueError):
            box.wrap(["/bin/true"], tmp_path, {}, [], device_nodes=bad)


def test_gpu_articles_parse_print_and_stay_apart() -> None:
    assert parse_article("net.bitwrk/blender/5.0/2G~gpu") == Article("5.0", "2G", False, True)
    both = parse_article("net.bitwrk/blender/5.0/2G~gpu~trusted")
    assert (both.gpu, both.trusted, both.device) == (True, True, "GPU")
    assert both.id == "net.bitwrk/blender/5.0/2G~gpu~trusted"
    assert parse_article("net.bitwrk/blender/5.0/2G").device == "CPU"
    assert article_id("5.0", "512M", gpu=True) == "net.bitwrk/blender/5.0/512M~gpu"
    for bad in ("net.bitwrk/blender/5.0/2G~trusted~gpu", "net.bitwrk/blender/5.0/2G~GPU",
                "net.bitwrk/blender/5.0/2G~gpu~gpu", "net.bitwrk/blender/5.0/2G~cuda"):
        with pytest.raises(UnknownArticle):
            parse_article(bad)


INFO = {"blender": "5.0", "scene": "Shot", "width": 96, "height": 64, "samples": 16,
        "seed": 0, "max_bounces": 6, "view_layers": [{"name": "ViewLayer", "use": True}],
        "adaptive": {"use": False}, "denoise": {"use": False}, "cpu_only": []}


def test_the_buyer_chooses_gpu_and_the_probe_refuses_cpu_only_scenes() -> None:
    cpu = plan(INFO, "scene.blend", [1], "4", "512M")
    assert cpu.article == "net.bitwrk/blender/5.0/512M"
    assert {s.device for _u, s in cpu.units} == {"CPU"}
    gpu = plan(INFO, "scene.blend", [1], "4", "512M", gpu=True)
    assert gpu.article == "net.bitwrk/blender/5.0/512M~gpu"
    assert {s.device for _u, s in gpu.units} == {"GPU"}
    assert [s.rect for _u, s in gpu.units] == [s.rect for _u, s in cpu.units]
    osl = dict(INFO, cpu_only=["Open Shading Language (Render Properties > ...)"])
    check_gpu(INFO)
    with pytest.raises(BitwrkError, match=r"cannot render on GPUs.*Open Shading Language"):
        plan(osl, "scene.blend", [1], "4", "512M", gpu=True)
    assert plan(osl, "scene.blend", [1], "4", "512M").article.endswith("/512M")


def _image(pixels: np.ndarray) -> MultiLayer:
    chans = [f"ViewLayer.Combined.{c}" for c in "RGBA"]
    return MultiLayer(pixels.shape[1], pixels.shape[0],
                      [Part("ViewLayer.Combined", chans, pixels.astype(np.float32))])


def test_gpu_results_are_checked_within_the_gpu_tolerance() -> None:
    spec = JobSpec(blend="scene.blend", scene="Shot", view_layers=("ViewLayer",), frame=1,
                   width=96, height=64, x0=0, x1=8, y0=0, y1=8, samples=16, seed=0,
                   max_bounces=6)
    assert verify.tolerance_for(spec) is verify.CPU_TOLERANCE
    gpu_spec = JobSpec(**{**spec.to_json(), "view_layers": ("ViewLayer",), "device": "GPU"})
    tol = verify.tolerance_for(gpu_spec)
    assert tol is verify.GPU_TOLERANCE
    patch = Rect(0, 8, 0, 8)
    rng = np.random.default_rng(1)
    ours = rng.uniform(0.05, 0.9, (8, 8, 4))
    near = ours * (1 + rng.uniform(-0.004, 0.004, ours.shape))  # GPU rounding, paths alike
    near[0, :2] += 0.2  # two pixels whose rays took another path on the GPU (3 %)
    diff = verify.compare(_image(near), _image(ours), patch, tol)
    assert not verify.failed([diff], tol)
    assert verify.failed([verify.compare(_image(near), _image(ours), patch)])  # CPU: fails
    lazy = ours * 1.02  # 15 of 16 samples: every pixel ~2 % off
    assert verify.failed([verify.compare(_image(lazy), _image(ours), patch, tol)], tol)
    evidence = verify.Evidence("a", "b", [diff], [_image(near)], [_image(ours)], tol)
    assert json.loads(evidence.field())["rtol"] == tol.rtol


def test_gpu_workers_get_room_for_the_driver_and_their_argv_names_the_device() -> None:
    from bitwrk.seller import sandbox as sb
    from bitwrk.seller.pool import WorkerPool

    none = Sandbox("none")
    cpu = WorkerPool({0}, 1, cost_class="512M", sandbox=none)
    gpu = WorkerPool({0}, 1, cost_class="512M", sandbox=none, device="gpu:cuda:1")
    mine = WorkerPool({0}, 1, cost_class="512M", sandbox=none, device="gpu", data_limit=5)
    assert cpu.data_limit == sb.MEMORY_BY_CLASS["512M"]
    assert gpu.data_limit == sb.MEMORY_BY_CLASS["512M"] + sb.GPU_DRIVER_DATA
    assert mine.data_limit == 5  # the seller's own --memory stands
    assert "--device" not in cpu.argv([0])
    argv = gpu.argv([0])
    assert argv[argv.index("--device") + 1] == "gpu:cuda:1"
    assert cpu.device_nodes() == [] and cpu.device == devices.CPU
