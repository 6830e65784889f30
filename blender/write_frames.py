"""Write bought animation frames as Blender's Render Animation would (a bpy process).

Run as ``python -I write_frames.py ROOT BLEND SCENE`` (``bpy`` module mode) or
``blender -b --factory-startup --python write_frames.py -- ROOT BLEND SCENE`` (inside a
Blender binary, whose bundled Python has no ``bpy`` module). ``ROOT`` holds ``bitwrk/``;
``BLEND`` (opened with scripts off) gives the scene's colour management, compositor,
denoiser and output format. Then, one JSON line per frame on stdin::

    {"frame": 3, "path": "/out/shot_0003.png", "tiles": [{"path": ..., "spec": {...}}]}

the frame's tiles are stitched, denoised once when the spec says so (see
docs/architecture.md), handed to Blender through a tiny render engine (so the view
transform, dither and compositor apply as after a local render) and saved with the scene's
own image settings to ``path``. Each frame is answered with ``{"frame": 3, "ok": true,
"path": ..., "seconds": ...}`` or ``{"frame": 3, "ok": false, "error": ...}``; the first
line is ``{"ready": true}``. The Blender thread that started this process never blocks on
it. """

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

ENGINE_ID = "BITWRK_WRITE_FRAMES"


def _args() -> list[str]:
    argv = sys.argv
    return argv[argv.index("--") + 1:] if "--" in argv else argv[1:]


def _engine_class(bpy: Any, holder: dict[str, Any]) -> Any:
    class FrameEngine(bpy.types.RenderEngine):  # type: ignore[misc]
        """Renders by handing Blender the stitched passes of ``holder["frame"]``."""

        bl_idname = ENGINE_ID
        bl_label = "BitWrk frames"
        bl_use_postprocess = True  # the scene's compositor runs, as after a local render

        def render(self, depsgraph: Any) -> None:
            frame = holder["frame"]
            layer = depsgraph.view_layer.name
            prefix = layer + "."
            for part in frame.parts:  # every pass the sellers' Cycles produced
                name = part.name[len(prefix):]
                if part.name.startswith(prefix) and name != "Combined":
                    ids = "".join(c.rsplit(".", 1)[-1] for c in part.channels)
                    self.add_pass(name, len(part.channels), ids, layer=layer)
            result = self.begin_result(0, 0, frame.width, frame.height, layer=layer)
            for render_pass in result.layers[0].passes:
                key = prefix + render_pass.name
                if frame.has(key):
                    render_pass.rect.foreach_set(frame.part(key).pixels.ravel())
            self.end_result(result)

    return FrameEngine


def main() -> int:
    root, blend, scene_name = _args()[:3]
    sys.path.insert(0, root)
    from bitwrk.render import compose, exr
    from bitwrk.render.bpyprocess import isolate_user_dirs, private_stdout
    from bitwrk.render.jobspec import JobSpec
    from bitwrk.render.scene import open_safely
    from bitwrk.render.tiling import Rect

    isolate_user_dirs()
    replies = private_stdout()

    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    bpy = open_safely(Path(blend))
    scene = bpy.data.scenes[scene_name]
    holder: dict[str, Any] = {}
    bpy.utils.register_class(_engine_class(bpy, holder))
    r = scene.render
    region = r.use_border  # a render region stays: Blender crops it, or not, as when local
    r.engine, r.resolution_percentage = ENGINE_ID, 100
    reply({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        number = None
        try:
            request = json.loads(line)
            number = int(request["frame"])
            began = time.perf_counter()
            tiles = [(Path(t["path"]), JobSpec.from_json(t["spec"])) for t in request["tiles"]]
            first = tiles[0][1]
            area = compose.region_of(scene, first, [s.rect for _p, s in tiles])
            spec = first.with_rect(area)
            frame = exr.stitch([(p, s.rect) for p, s in tiles], spec.width, spec.height, area)
            if spec.denoise:
                keep = all(vl.cycles.denoising_store_passes for vl in scene.view_layers
                           if vl.name in spec.view_layers)
                compose.denoise_frame(frame, spec, compose.denoise_settings(scene), keep)
            holder["frame"] = frame
            r.resolution_x, r.resolution_y = spec.width, spec.height
            r.use_border = region and area != Rect(0, spec.width, 0, spec.height)
            scene.frame_set(number)  # the compositor and the file's metadata see the frame
            bpy.ops.render.render(scene=scene.name)
            out = Path(request["path"])
            out.parent.mkdir(parents=True, exist_ok=True)
            bpy.data.images["Render Result"].save_render(filepath=str(out), scene=scene)
            reply({"frame": number, "ok": True, "path": str(out),
                   "seconds": round(time.perf_counter() - began, 3)})
        except Exception as exc:  # answered, never swallowed: the buyer reports it
            reply({"frame": number, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
