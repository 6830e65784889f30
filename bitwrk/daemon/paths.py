"""Where the daemon keeps things: platformdirs locations (XDG_* honoured on Linux), so a
test can give each process its own identity by setting XDG_DATA_HOME / XDG_CACHE_HOME."""

from __future__ import annotations

from pathlib import Path

import platformdirs

APP = "bitwrk"


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def key_path() -> Path:
    return data_dir() / "identity.wif"
