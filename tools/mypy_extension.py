"""mypy (strict, pyproject.toml's settings) over the Blender extension's own code.

    python -m tools.mypy_extension

The extension's packages (``blender/``, ``operators/``, ``panels/``, the root
``__init__.py``) import the core as ``..bitwrk``: they only type-check as subpackages of
one package, as Blender imports them (``bl_ext.<repo>.bitwrk``). The repository folder may
have any name, so this runs mypy in a temporary folder where a link with a fixed name
points at the repository, and checks ``bitwrk_extension.blender`` and the rest; the core
is followed there and checked again under that name. Entry points that run in their own
process and import ``bitwrk`` absolutely (``blender/write_frames.py``) find it through
``MYPYPATH``. Exits with mypy's status.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "bitwrk_extension"
CHECKED = ("blender", "operators", "panels")


def command() -> list[str]:
    args = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
            "--cache-dir", str(ROOT / ".mypy_cache" / "extension"), "-m", PACKAGE]
    for name in CHECKED:
        args += ["-p", f"{PACKAGE}.{name}"]
    return args


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bitwrk-mypy-") as tmp:
        (Path(tmp) / PACKAGE).symlink_to(ROOT, target_is_directory=True)
        env = {**os.environ, "MYPYPATH": str(ROOT)}
        return subprocess.run(command(), cwd=tmp, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
