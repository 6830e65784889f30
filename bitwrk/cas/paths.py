"""Names of files inside a job: safe relative POSIX paths on every seller's file system.

A manifest comes from a stranger and its names become paths under the seller's job dir,
so a name must not climb out (``..``, absolute paths: the "zip slip" class of bug, CWE-22)
nor mean something else on Windows or macOS sellers: backslashes and ``:`` (drive letters,
NTFS streams), device names such as ``NUL``, trailing dots or spaces that Windows strips
(see Microsoft's "Naming Files, Paths, and Namespaces"), and names that differ only by
case or Unicode normalization, which collide on case-insensitive or normalizing disks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from ..errors import ManifestError

__all__ = ["MAX_NAME_LENGTH", "check_name", "check_names", "safe_join"]

MAX_NAME_LENGTH = 1024
_MAX_COMPONENT_BYTES = 255  # NAME_MAX on Linux and macOS, the NTFS component limit
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f\\:]")
_WINDOWS_DEVICE = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")


def check_name(name: str) -> None:
    """Raise ManifestError unless ``name`` is a safe relative POSIX path."""
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ManifestError(f"a file name is a string of 1..{MAX_NAME_LENGTH} characters",
                            name=repr(name)[:100])
    if _FORBIDDEN.search(name):
        raise ManifestError("a file name has no control characters, backslashes or colons",
                            name=repr(name)[:100])
    for part in name.split("/"):
        _check_component(name, part)


def _check_component(name: str, part: str) -> None:
    if part in ("", ".", ".."):
        raise ManifestError("a file name is relative, without empty, '.' or '..' parts",
                            name=name[:100])
    if len(part.encode("utf-8", "surrogatepass")) > _MAX_COMPONENT_BYTES:
        raise ManifestError("a file name part is over 255 bytes", name=name[:100])
    if part[-1] in ". " or _WINDOWS_DEVICE.fullmatch(part):
        raise ManifestError("a file name part is not valid on Windows "
                            "(device name, or ends in a dot or space)", name=name[:100])


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def check_names(names: Iterable[str]) -> None:
    """Each name is safe, and no two collide (case, normalization, file vs directory)."""
    files: dict[str, str] = {}
    for name in names:
        check_name(name)
        folded = _fold(name)
        if folded in files:
            raise ManifestError("two files have the same name (ignoring case)",
                                name=name[:100], other=files[folded][:100])
        files[folded] = name
    dirs = {_fold(name).rsplit("/", 1)[0] for name in files.values() if "/" in name}
    parents = {"/".join(d.split("/")[:i]) for d in dirs for i in range(1, d.count("/") + 2)}
    clash = parents & files.keys()
    if clash:
        raise ManifestError("a file name is also used as a directory",
                            name=files[min(clash)][:100])


def safe_join(root: Path, name: str) -> Path:
    """``root / name`` for a checked name, proven to stay inside ``root``."""
    check_name(name)
    target = root.joinpath(*name.split("/"))
    base = root.resolve()
    if not target.resolve().is_relative_to(base):  # a symlink planted under root
        raise ManifestError("a file name leads outside the job directory", name=name[:100])
    return target
