"""Where a participant's key lives: a WIF file, mode 0600, created with O_EXCL, never logged."""

from __future__ import annotations

import os
from pathlib import Path

from .keys import PrivateKey


def load_or_create_key(path: Path, network: str) -> PrivateKey:
    """The key in ``path``; a new one for ``network`` if the file does not exist yet."""
    try:
        return PrivateKey.from_wif(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = PrivateKey.generate(network)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return PrivateKey.from_wif(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(key.to_wif() + "\n")
    return key
