"""Names of packed files: every path component one a seller accepts
(:func:`bitwrk.cas.paths.check_name`), and no two names that clash the way
``check_names`` sees clashes (case, Unicode normalization, a file that is also a folder)."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import PurePath, PurePosixPath

from ..cas.paths import check_name
from ..errors import ManifestError

__all__ = ["NameTable", "digest", "safe_part"]

_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\\:]")  # what check_name refuses in a name


def digest(path: PurePath) -> str:
    return hashlib.sha256(os.fsencode(str(path))).hexdigest()[:12]


def _is_safe(name: str) -> bool:
    try:
        check_name(name)
    except ManifestError:
        return False
    return True


def safe_part(part: str) -> str:
    """``part`` as a path component every seller accepts (a readable mapping if possible)."""
    if _is_safe(part):
        return part
    part = _UNSAFE_CHARS.sub("_", part)
    if part in ("", ".", ".."):
        part = "_"
    if part[-1] in ". ":
        part += "_"
    for candidate in (part, "_" + part):  # "_" defuses Windows device names like NUL.png
        if _is_safe(candidate):
            return candidate
    return digest(PurePosixPath(part)) + PurePosixPath(part).suffix[:16]  # too long


class NameTable:
    """Names claimed so far. A name is free unless a seller would refuse it or it clashes
    with a claimed one as ``check_names`` sees clashes: ignoring case and Unicode
    normalization, or a file name that is also a folder name."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.folders: set[str] = set()

    @staticmethod
    def _fold(name: str) -> str:
        return unicodedata.normalize("NFC", name).casefold()  # as check_names folds

    def free(self, name: str) -> bool:
        folded = self._fold(name)
        parts = folded.split("/")
        parents = {"/".join(parts[:i]) for i in range(1, len(parts))}
        return (_is_safe(name) and folded not in self.files
                and folded not in self.folders and not parents & self.files)

    def claim(self, *candidates: str) -> str:
        """The first free candidate (the last one even if taken: verified later)."""
        chosen = next((c for c in candidates if self.free(c)), candidates[-1])
        parts = self._fold(chosen).split("/")
        self.files.add("/".join(parts))
        self.folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return chosen
