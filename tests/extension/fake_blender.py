"""A stand-in for a Blender binary (there is none on this machine), run as ``python
fake_blender.py ARGS...`` behind a shell wrapper: it keeps Blender's command-line
conventions that matter to BitWrk — the banner on stdout before any script runs,
``sys.argv`` holding Blender's whole command line, ``--`` ending Blender's own options,
``--python-expr``/``--python`` run in order — and refuses a worker start without ``-b``
and ``--factory-startup``. Its Python is the one with the ``bpy`` module, so ``import bpy``
works inside, as it does in a real Blender. Each call is logged to ``$FAKE_BLENDER_LOG``.
"""

from __future__ import annotations

import os
import runpy
import sys


def main() -> None:
    argv = [os.environ.get("FAKE_BLENDER_ARGV0", sys.argv[0]), *sys.argv[1:]]
    log = os.environ.get("FAKE_BLENDER_LOG")
    if log:
        with open(log, "a") as f:
            f.write(repr(argv) + "\n")
    own = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if "-b" not in own or "--factory-startup" not in own:
        print("fake blender: a worker must run with -b --factory-startup", file=sys.stderr)
        sys.exit(2)
    print("Blender 5.0.1 (hash 0000000 built 2025-01-01 00:00:00)", flush=True)  # the banner
    sys.argv = argv
    i = 1
    while i < len(own):
        if own[i] == "--python-expr":
            exec(compile(own[i + 1], "<string>", "exec"), {"__name__": "__main__"})
            i += 2
        elif own[i] == "--python":
            runpy.run_path(own[i + 1], run_name="__main__")
            i += 2
        else:
            i += 1
    print("\nBlender quit", flush=True)


if __name__ == "__main__":
    main()
