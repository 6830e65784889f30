"""Set-up shared by every process that imports ``bpy`` (worker, probe, compose).

Blender writes its user config, extensions and thumbnails under ``~`` unless
``BLENDER_USER_RESOURCES`` and ``XDG_CACHE_HOME`` point elsewhere, and it prints render
progress and file messages on stdout. These helpers keep both out of the way; they must
run **before** ``import bpy``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import TextIO

USER_DIR_VARS = ("BLENDER_USER_RESOURCES", "XDG_CACHE_HOME")


def isolate_user_dirs() -> None:
    """Point Blender's user and cache dirs at a private temp dir unless already set."""
    if all(os.environ.get(name) for name in USER_DIR_VARS):
        return
    scratch = tempfile.mkdtemp(prefix="bitwrk-bpy-")
    atexit.register(shutil.rmtree, scratch, True)
    os.environ.setdefault("BLENDER_USER_RESOURCES", os.path.join(scratch, "blender"))
    os.environ.setdefault("XDG_CACHE_HOME", os.path.join(scratch, "cache"))


def private_stdout() -> TextIO:
    """Keep the real stdout for our own output; send everything else on fd 1 to stderr.

    Blender (C code and Python alike) prints progress lines on stdout; a process that
    answers in JSON on stdout needs them elsewhere.
    """
    sys.stdout.flush()
    ours = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return ours
