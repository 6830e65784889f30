"""Build the BitWrk Blender extension zip(s), wheels included, and validate them.

    python tools/build_extension.py                       # all four platforms, one zip each
    python tools/build_extension.py --platforms linux-x64 --out dist

1. ``pip download --only-binary=:all: --no-deps`` of every pinned runtime dependency for
   each Python Blender ships (3.11: 4.2 LTS - 5.0; 3.13: 5.1+ and Debian's 4.3) per
   platform into ``wheels/<platform>-cp3XX/`` (kept between runs). One zip per platform
   holds both sets; Blender installs the wheels that match its own Python. Pins are
   exact because unpinned ``--platform`` queries fall back to old or beta releases, and
   several ``--platform`` tags are passed for Linux because pip does not expand
   ``manylinux_2_28`` to older tags (docs/measured-facts.md P2).
2. A staging copy of the extension (root ``__init__.py``, manifest, ``bitwrk/``,
   ``blender/``, ``operators/``, ``panels/``, the wheels) with the manifest's ``platforms``
   and ``wheels`` written for what is staged.
3. ``blender_ext.py build --split-platforms`` and ``validate`` — Blender's own extension
   CLI; the copy inside the ``bpy`` wheel runs on plain Python, no Blender binary needed.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Blender 4.2 LTS - 5.0 ship CPython 3.11; 5.1+ (and Debian's 4.3 build) 3.13.
PYTHON_VERSIONS = ("3.11", "3.13")
PACKAGES = ("bitwrk", "blender", "operators", "panels")

# name==version for every platform; a platform's overrides replace or add entries.
PINS = {
    "aiohttp": "3.14.5", "multidict": "7.2.1", "yarl": "1.25.1", "frozenlist": "1.8.0",
    "propcache": "0.5.4", "aiohappyeyeballs": "2.7.1", "aiosignal": "1.4.0",
    "attrs": "26.1.0", "idna": "3.20", "typing-extensions": "4.16.0",
    "coincurve": "21.0.0", "cryptography": "50.0.2", "cffi": "2.1.1", "pycparser": "3.12",
    "platformdirs": "4.14.8", "pyfastcdc": "0.3.1", "blender-asset-tracer": "1.23",
    "qrcode": "8.2",
}
PLATFORMS: dict[str, tuple[list[str], dict[str, str]]] = {
    "linux-x64": (["manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                   "manylinux2014_x86_64"], {}),
    "windows-x64": (["win_amd64"], {"colorama": "0.4.6"}),  # qrcode needs it on Windows
    "macos-arm64": (["macosx_11_0_arm64"], {}),
    # cryptography >= 49 has no Intel-Mac wheel; 48.0.1 universal2 is the last one
    "macos-x64": (["macosx_11_0_x86_64"], {"cryptography": "48.0.1"}),
}


def blender_ext_cli() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        raise SystemExit("the bpy module is needed for Blender's extension CLI")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/"
                                                 "blender_ext.py"))
    if not found:
        raise SystemExit("blender_ext.py not found inside the bpy package")
    return found[-1]


def download_wheels(platform: str, wheels_dir: Path) -> list[Path]:
    """The pinned wheels for ``platform``, every Python in :data:`PYTHON_VERSIONS`."""
    return [w for version in PYTHON_VERSIONS
            for w in download_for(platform, version, wheels_dir)]


def download_for(platform: str, python: str, wheels_dir: Path) -> list[Path]:
    """The pinned wheels for ``platform`` and ``python`` in ``wheels_dir/<platform>-cpXY/``
    (downloaded once)."""
    tags, overrides = PLATFORMS[platform]
    pins = {**PINS, **overrides}
    target = wheels_dir / f"{platform}-cp{python.replace('.', '')}"
    target.mkdir(parents=True, exist_ok=True)
    have = {_project(w.name): w for w in target.glob("*.whl")}
    wanted = {_norm(name): f"{name}=={version}" for name, version in pins.items()}
    missing = [req for key, req in wanted.items()
               if key not in have or f"-{req.split('==')[1]}-" not in have[key].name]
    if missing:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--implementation", "cp", "--python-version",
               python, "-d", str(target)]
        for tag in tags:
            cmd += ["--platform", tag]
        subprocess.run([*cmd, *missing], check=True)
    found = {_project(w.name): w for w in target.glob("*.whl")}
    return sorted(found[key] for key in wanted)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _project(wheel_name: str) -> str:
    return _norm(wheel_name.split("-")[0])


def stage(platforms: list[str], wheels: dict[str, list[Path]], into: Path) -> Path:
    """A clean copy of the extension with its manifest written for ``platforms``."""
    src = into / "bitwrk"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    src.mkdir(parents=True)
    shutil.copy2(ROOT / "__init__.py", src / "__init__.py")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    (src / "wheels").mkdir()
    names: set[str] = set()
    for files in wheels.values():
        for wheel in files:
            shutil.copy2(wheel, src / "wheels" / wheel.name)
            names.add(wheel.name)
    manifest = (ROOT / "blender_manifest.toml").read_text()
    (src / "blender_manifest.toml").write_text(
        manifest_for(manifest, platforms, sorted(names)))
    return src


def manifest_for(manifest: str, platforms: list[str], wheel_names: list[str]) -> str:
    """``manifest`` with its ``platforms`` and ``wheels`` arrays replaced."""
    def array(key: str, values: list[str]) -> str:
        body = "".join(f'  "{v}",\n' for v in values)
        return f"{key} = [\n{body}]\n"

    for key, values in (("platforms", platforms),
                        ("wheels", [f"./wheels/{n}" for n in wheel_names])):
        pattern = re.compile(rf"^{key} = \[.*?\]\n", re.S | re.M)
        found = pattern.search(manifest)
        if found is None:
            raise SystemExit(f"blender_manifest.toml has no top-level {key} = [...]")
        manifest = manifest[:found.start()] + array(key, values) + manifest[found.end():]
    return manifest


def build(platforms: list[str], out: Path, wheels_dir: Path) -> list[Path]:
    cli = blender_ext_cli()
    wheels = {p: download_wheels(p, wheels_dir) for p in platforms}
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bitwrk-ext-") as tmp:
        src = stage(platforms, wheels, Path(tmp))
        subprocess.run([sys.executable, str(cli), "validate", str(src)], check=True)
        before = set(out.glob("*.zip"))
        subprocess.run([sys.executable, str(cli), "build", "--source-dir", str(src),
                        "--output-dir", str(out), "--split-platforms"], check=True)
        zips = sorted(set(out.glob("*.zip")) - before) or sorted(out.glob("bitwrk-*.zip"))
    for path in zips:
        subprocess.run([sys.executable, str(cli), "validate", str(path)], check=True)
    return zips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/build_extension.py",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--platforms", default=",".join(PLATFORMS),
                        help="comma-separated Blender platforms (default: all four)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--wheels", type=Path, default=ROOT / "wheels",
                        help="wheel cache, one folder per platform")
    args = parser.parse_args(argv)
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    unknown = sorted(set(platforms) - set(PLATFORMS))
    if unknown:
        parser.error(f"unknown platform(s) {unknown}; known: {sorted(PLATFORMS)}")
    for path in build(platforms, args.out.resolve(), args.wheels.resolve()):
        print(f"built {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
