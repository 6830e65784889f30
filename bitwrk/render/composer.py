"""The buyer's long-lived bpy process: probe the scene, then compose frames as they land.

Started first thing in a purchase, it pays ``import bpy`` and opening the file while the
buyer packs and trades (docs/buying.md, "Overlap"). It answers on stdout, one
JSON line each:

- at start, the scene's description (:func:`bitwrk.render.scene.probe`):
  ``{"probe": {...}}`` or ``{"error": ..., "message": ...}``;
- per line on stdin ``{"compose": REQUEST}`` (a :class:`ComposeRequest` without ``blend``:
  the open file is used) one ``{"ok": true, "exr": ..., "seconds": {...}}`` or
  ``{"ok": false, "code": ..., "error": ...}`` — the frame stitched, denoised once, written;
- per line ``{"test_tile": SPEC}`` the seconds one core takes to render that
  :class:`JobSpec` here (the quote's sample), after which the process only quotes.

It ends at the end of stdin. :class:`Composer` runs it from the buyer's side; a frame's
file is bit-identical to what ``python -m bitwrk.render.compose`` writes for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from ..errors import BitwrkError
from .errors import ComposeError, RenderError
from .jobspec import JobSpec


def _serve(blend: Path, scene: str | None, out: IO[str]) -> int:
    from . import compat
    from .compose import ComposeRequest, compose
    from .scene import probe

    def say(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    try:
        info = probe(blend, scene)
    except RenderError as exc:
        say(exc.to_json())
        return 1
    say({"probe": info})
    _warm_output(info["scene"])
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            if "test_tile" in message:
                say({"ok": True, "seconds": _test_tile(JobSpec.from_json(message["test_tile"]))})
                continue
            result = compose(ComposeRequest.from_json(message["compose"]), info["scene"])
        except (BitwrkError, OSError, ValueError, KeyError, TypeError) as exc:
            code = exc.code if isinstance(exc, BitwrkError) else ComposeError.code
            say({"ok": False, "code": code, "error": str(exc)})
            continue
        say({"ok": True, "exr": str(result.exr), "png": str(result.png) if result.png else None,
             "denoised": result.denoised, "seconds": result.seconds})
    compat.close_file(sys.modules["bpy"])
    return 0


def _warm_output(scene_name: str) -> None:
    """Write a blank 4x4 PNG through the scene's output path once, while the first units
    trade: Blender's first render in a process sets up its pipeline (~0.06 s), which would
    otherwise fall after the last unit of a one-frame purchase. Nothing depends on it."""
    import bpy

    from . import exr
    from .compose import write_png

    with tempfile.TemporaryDirectory(prefix="bitwrk-warm-") as tmp:
        try:
            write_png(bpy, bpy.data.scenes[scene_name], exr.MultiLayer(4, 4, []),
                      Path(tmp) / "warm.png")
        except Exception as exc:  # the real frames will say what is wrong
            print(f"warming the output path failed: {exc}", file=sys.stderr, flush=True)


def _test_tile(spec: Any) -> float:
    """Render ``spec`` on one thread as a seller would; its seconds (render + save)."""
    import bpy

    from ..seller.tile import render

    with tempfile.TemporaryDirectory(prefix="bitwrk-quote-") as tmp:
        return render(bpy, spec, Path(tmp) / "tile.exr", threads=1)


# For a process that cannot ``-m bitwrk...`` (the extension: ``bitwrk`` lives inside it; a
# Blender binary: its Python has no bpy module): ROOT holds bitwrk/, arguments follow "--".
BOOTSTRAP = ("import sys; sys.path.insert(0, {root!r}); "
             "from bitwrk.render.composer import main; "
             "sys.exit(main(sys.argv[sys.argv.index('--') + 1:]))")


def command(root: Path, blender_binary: str | None = None) -> list[str]:
    """How to start this process from the extension: ``bpy`` module or ``blender -b``."""
    code = BOOTSTRAP.format(root=str(root))
    if blender_binary:
        return [blender_binary, "-b", "--factory-startup", "--python-exit-code", "1",
                "--python-expr", code, "--"]
    return [sys.executable, "-I", "-c", code, "--"]


def main(argv: list[str] | None = None) -> int:
    from .bpyprocess import isolate_user_dirs, private_stdout

    parser = argparse.ArgumentParser(prog="python -m bitwrk.render.composer",
                                     description="Probe a .blend, then compose frames "
                                                 "from stdin (one JSON line each).")
    parser.add_argument("blend", type=Path)
    parser.add_argument("--scene", help="scene name (default: the file's active scene)")
    args = parser.parse_args(argv)
    isolate_user_dirs()
    return _serve(args.blend.resolve(), args.scene, private_stdout())


# -- the buyer's side -------------------------------------------------------------------------


class Composer:
    """Runs ``python -m bitwrk.render.composer`` and talks to it (no bpy in this process).

    :meth:`probe` waits for the scene's description; :meth:`submit` hands over a frame
    (never blocks); :meth:`finish` closes stdin and waits for every answer. Use it as a
    context manager: leaving kills the process if it still runs.
    """

    def __init__(self, blend: Path, env: dict[str, str] | None = None,
                 command: list[str] | None = None) -> None:
        self.blend = blend
        self._answers: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [*(command or [sys.executable, "-m", "bitwrk.render.composer"]), str(blend)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env=env)
        self.pending = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._info: dict[str, Any] | None = None

    def __enter__(self) -> Composer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):  # closed under us by close()
            for line in self.proc.stdout:
                try:  # a Blender binary prints its banner on stdout: not ours
                    answer = json.loads(line) if line.startswith("{") else None
                except json.JSONDecodeError:
                    continue
                if isinstance(answer, dict):
                    answer["at"] = time.monotonic()  # when it arrived here
                    self._answers.put(answer)
        self._answers.put(None)  # the process ended

    def _next(self, timeout: float) -> dict[str, Any]:
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise ComposeError(f"the compose process did not answer within {timeout:.0f} s"
                               ) from None
        if answer is None:
            self._answers.put(None)  # every later caller learns it too
            raise ComposeError(f"the compose process ended: {self.stderr()}")
        return answer

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()[-1000:]

    def probe(self, timeout: float = 300.0) -> dict[str, Any]:
        """The scene's render settings; raises :class:`BitwrkError` for a broken file."""
        if self._info is None:
            answer = self._next(timeout)
            if "probe" not in answer:
                raise BitwrkError(f"cannot read {self.blend}: {answer.get('message', answer)}")
            self._info = dict(answer["probe"])
        return self._info

    def _send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            raise ComposeError(f"the compose process ended: {self.stderr()}") from None
        self.pending += 1

    def submit(self, request: dict[str, Any]) -> None:
        """Compose one frame (a compose request as JSON); answered in :meth:`finish`."""
        self._send({"compose": request})

    def test_tile(self, spec: dict[str, Any], timeout: float = 600.0) -> float:
        """Seconds one core takes to render ``spec`` (a JobSpec as JSON) in this scene."""
        self._send({"test_tile": spec})
        answer = self._next(timeout)
        self.pending -= 1
        if not answer.get("ok"):
            raise BitwrkError(f"test render failed: {answer.get('error')}")
        return float(answer["seconds"])

    def answered(self) -> int:
        """After :meth:`close`: how many of the outstanding requests were answered."""
        count = 0
        while True:
            try:
                answer = self._answers.get_nowait()
            except queue.Empty:
                return count
            count += answer is not None

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        """Every answer still due, in order; then the process is ended."""
        end = time.monotonic() + timeout
        answers = []
        while self.pending:
            answers.append(self._next(max(0.1, end - time.monotonic())))
            self.pending -= 1
        # Every frame is written and answered: nothing is left to save, and Blender's own
        # teardown (a few tenths of a second) would only add to the job's tail.
        self.close()
        return answers

    def close(self) -> None:
        """Kill the process if it still runs (done, an error, or leaving early)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)  # every answer it gave is queued
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
        self._stderr.close()


class FrameOutput:
    """Hands each frame to a :class:`Composer` as soon as its last unit has landed;
    ``units`` are (unit id, spec) pairs, frames written to ``out/<scene>_<frame>.exr/.png``."""

    def __init__(self, units: list[tuple[str, JobSpec]], out: Path, scene: str,
                 composer: Composer) -> None:
        self.specs = dict(units)
        self.missing: dict[int, set[str]] = {}
        for unit_id, spec in units:
            self.missing.setdefault(spec.frame, set()).add(unit_id)
        self.out, self.scene, self.composer = out, scene, composer
        self.results: dict[str, Path] = {}
        self.written: list[Path] = []  # EXR, PNG per frame handed over, in order
        self.seconds: dict[str, float] = {}  # stitch, denoise, write: summed over frames
        self.last_landed = self.last_written = 0.0  # monotonic

    def landed(self, unit_id: str, result: Path) -> None:
        self.results[unit_id] = result
        self.last_landed = time.monotonic()
        frame = self.specs[unit_id].frame
        self.missing[frame].discard(unit_id)
        if self.missing[frame]:
            return
        stem = self.out / f"{self.scene}_{frame:04d}"
        self.composer.submit({"tiles": [{"path": str(self.results[u]), "spec": s.to_json()}
                                        for u, s in self.specs.items() if s.frame == frame],
                              "exr": f"{stem}.exr", "png": f"{stem}.png"})
        self.written += [Path(f"{stem}.exr"), Path(f"{stem}.png")]

    def finish(self, timeout: float) -> list[Path]:
        """Wait for every frame handed over; the files written. Raises ComposeError."""
        answers = self.composer.finish(timeout)
        bad = [a for a in answers if not a.get("ok")]
        if bad:
            raise ComposeError(f"{bad}")
        for answer in answers:
            for step, seconds in answer["seconds"].items():
                self.seconds[step] = self.seconds.get(step, 0.0) + seconds
        self.last_written = max((a["at"] for a in answers), default=self.last_landed)
        return self.written

    def abandon(self) -> None:
        """Leaving early: end the compose process; a frame it had not finished may be half
        written, so its files go (a frame on disk is always a whole one)."""
        self.composer.close()
        for path in self.written[2 * self.composer.answered():]:
            path.unlink(missing_ok=True)

    def report(self) -> str:
        """Where compositing took its time, and how much of it came after the last unit."""
        steps = " + ".join(f"{step} {sec:.1f}" for step, sec in self.seconds.items())
        frames = len(self.written) // 2
        return (f"composed {frames} frame(s) as their units landed ({steps} s); the last "
                f"{max(0.0, self.last_written - self.last_landed):.2f} s after the last unit")


if __name__ == "__main__":
    sys.exit(main())
