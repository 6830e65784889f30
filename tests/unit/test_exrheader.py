"""The EXR header parser meets hostile bytes: anything but a well-formed header within the
caps is a ResultRejected, never another exception, and nothing big is allocated."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitwrk.render import exrheader
from bitwrk.render.errors import ResultRejected


def attr(name: str, kind: str, value: bytes) -> bytes:
    return name.encode() + b"\0" + kind.encode() + b"\0" + struct.pack("<i", len(value)) + value


def channels(*names: str, pixel_type: int = 2) -> bytes:
    return b"".join(n.encode() + b"\0" + struct.pack("<iB3xii", pixel_type, 0, 1, 1)
                    for n in names) + b"\0"


def header(width: int = 8, height: int = 4, chans: bytes | None = None,
           compression: int = 3) -> bytes:
    box = struct.pack("<4i", 0, 0, width - 1, height - 1)
    body = (attr("channels", "chlist", chans or channels("R", "G", "B", "A"))
            + attr("compression", "compression", bytes([compression]))
            + attr("dataWindow", "box2i", box) + attr("displayWindow", "box2i", box))
    return exrheader.MAGIC + struct.pack("<I", 2) + body + b"\0"


def test_a_well_formed_single_part_header_is_read() -> None:
    # ZIP packs 16 lines a chunk: one offset, one chunk (y, size, raw pixels) at most
    data = header() + bytes(8) + bytes(8 + 8 * 4 * 16)
    (part,) = exrheader.check(data, 8, 4)
    assert (part.width, part.height, [c.name for c in part.channels]) == (8, 4, list("RGBA"))


@pytest.mark.parametrize(("data", "match"), [
    (header(width=100_000, height=100_000), "is 100000x100000"),
    (header(compression=8), "lossless only"),
    (header(chans=channels("R", pixel_type=0)), "not a plain half/float"),
    (header(chans=channels("A", "B", "G", "R", "X")), "more than 4 channels"),
    (header()[:-10], "truncated"),
    (exrheader.MAGIC + struct.pack("<I", 2 | 0x200) + b"\0", "tiled"),
    (exrheader.MAGIC + struct.pack("<I", 2) + b"x" * 100, "overlong name"),
    (exrheader.MAGIC + struct.pack("<I", 2) + attr("a", "b", b"")[:-4]
     + struct.pack("<i", 1 << 30), "larger than allowed"),
])
def test_bad_headers_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(ResultRejected, match=match):
        exrheader.check(data, 8, 4)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 300))
def test_random_bytes_never_escape_as_another_error(tail: bytes, cut: int) -> None:
    good = header() + bytes(32)
    for data in (exrheader.MAGIC + tail, good[:cut] + tail, good + tail):
        with contextlib.suppress(ResultRejected):
            exrheader.check(data, 8, 4)
