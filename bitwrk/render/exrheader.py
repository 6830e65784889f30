"""OpenEXR headers of untrusted files, parsed in pure Python before any pixel is decoded.

A seller's result is a file from a stranger. OpenImageIO/OpenEXR size their buffers from
the header (data window x channels), so a 1 MB file that declares 32k x 32k pixels of
zeros makes the reader allocate gigabytes. Here the header is read with hard caps on
its own size, every part is checked against the unit's rect and the channel layout an
honest render has, and the file's length against what such pixels can take — all before
the decoder sees it. Once the dimensions and channels are fixed, OpenEXR's decompression
is bounded by them (each chunk inflates into a buffer of its declared line size).

Format: https://openexr.com/en/latest/OpenEXRFileLayout.html — magic, a version word
with flags, then per part a list of ``name\\0 type\\0 size value`` attributes ended by
a NUL; a multi-part file ends its list of headers with one more NUL.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass

from .errors import ResultRejected

MAGIC = b"\x76\x2f\x31\x01"
MAX_HEADER_BYTES = 1 << 20  # Blender's headers are ~2 KB; a megabyte is generous
MAX_PARTS = 64
MAX_CHANNELS_PER_PASS = 4  # every Blender pass has 1-4 channels
# Blender 4.x writes every pass of a multilayer EXR into one part, its channels named
# "ViewLayer.Combined.R" ... (5.0: one part per pass); so a part may hold many passes,
# each of at most 4 channels, and all parts together at most this many channels.
MAX_CHANNELS = 64
MAX_ATTRIBUTES = 256
# Lossless codecs only (an honest tile is ZIP): NONE, RLE, ZIPS, ZIP, PIZ.
LOSSLESS = {0: "none", 1: "rle", 2: "zips", 3: "zip", 4: "piz"}
LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32}
PIXEL_BYTES = {1: 2, 2: 4}  # HALF, FLOAT; UINT (0) is never a render pass
_FLAG_TILED, _FLAG_LONG_NAMES, _FLAG_DEEP, _FLAG_MULTIPART = 0x200, 0x400, 0x800, 0x1000


@dataclass(frozen=True)
class Channel:
    name: str
    pixel_type: int  # 1 HALF, 2 FLOAT


@dataclass(frozen=True)
class PartHeader:
    """What the decoder will allocate for one part, read from its header."""

    name: str
    channels: tuple[Channel, ...]
    data_window: tuple[int, int, int, int]  # xmin, ymin, xmax, ymax (inclusive)
    display_window: tuple[int, int, int, int]
    compression: int
    kind: str  # "scanlineimage" for every part Blender writes

    @property
    def width(self) -> int:
        return self.data_window[2] - self.data_window[0] + 1

    @property
    def height(self) -> int:
        return self.data_window[3] - self.data_window[1] + 1

    def raw_bytes(self) -> int:
        """Uncompressed pixel bytes as stored (HALF 2, FLOAT 4 per value)."""
        return self.width * self.height * sum(PIXEL_BYTES.get(c.pixel_type, 4)
                                              for c in self.channels)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > min(len(self.data), MAX_HEADER_BYTES):
            raise ResultRejected("EXR header is truncated or larger than allowed",
                                 limit=MAX_HEADER_BYTES)
        piece = self.data[self.pos:self.pos + n]
        self.pos += n
        return piece

    def cstring(self, limit: int) -> str:
        end = self.data.find(b"\x00", self.pos, min(len(self.data), self.pos + limit + 1))
        if end < 0:
            raise ResultRejected("EXR header has an unterminated or overlong name")
        raw = self.take(end - self.pos)
        self.pos += 1
        return raw.decode("latin-1")

    def peek_nul(self) -> bool:
        if self.pos >= len(self.data):
            raise ResultRejected("EXR header is truncated")
        return self.data[self.pos] == 0


def _channels(value: bytes, name_limit: int) -> tuple[Channel, ...]:
    reader, found = _Reader(value), []
    while not reader.peek_nul():
        name = reader.cstring(name_limit)
        pixel_type, _linear, xs, ys = struct.unpack("<iB3xii", reader.take(16))
        if pixel_type not in PIXEL_BYTES or (xs, ys) != (1, 1):
            raise ResultRejected(f"EXR channel {name!r} is not a plain half/float channel")
        found.append(Channel(name, pixel_type))
        if len(found) > MAX_CHANNELS:
            raise ResultRejected(f"an EXR part has more than {MAX_CHANNELS} channels")
    passes = Counter(c.name.rpartition(".")[0] for c in found)
    if passes and max(passes.values()) > MAX_CHANNELS_PER_PASS:
        raise ResultRejected(f"an EXR pass has more than {MAX_CHANNELS_PER_PASS} channels")
    return tuple(found)


def _header(reader: _Reader, name_limit: int, multipart: bool) -> PartHeader:
    attrs: dict[str, bytes] = {}
    while not reader.peek_nul():
        if len(attrs) >= MAX_ATTRIBUTES:
            raise ResultRejected("EXR header has too many attributes")
        key, _kind = reader.cstring(name_limit), reader.cstring(name_limit)
        (size,) = struct.unpack("<i", reader.take(4))
        attrs[key] = reader.take(size)
    reader.take(1)
    try:
        data = struct.unpack("<4i", attrs["dataWindow"])
        display = struct.unpack("<4i", attrs["displayWindow"])
        compression = attrs["compression"][0]
        channels = _channels(attrs["channels"], name_limit)
    except (KeyError, IndexError, struct.error) as exc:
        raise ResultRejected(f"EXR header lacks or garbles a required attribute: {exc}"
                             ) from None
    name = attrs.get("name", b"").rstrip(b"\x00").decode("latin-1")
    kind = attrs.get("type", b"scanlineimage").rstrip(b"\x00").decode("latin-1")
    if multipart and ("name" not in attrs or "type" not in attrs):
        raise ResultRejected("a multi-part EXR part needs a name and a type")
    return PartHeader(name, channels, data, display, compression, kind)


def parse(data: bytes) -> tuple[list[PartHeader], int]:
    """Every part's header and where the headers end; raises :class:`ResultRejected`."""
    if not data.startswith(MAGIC):
        raise ResultRejected("result is not an OpenEXR file")
    reader = _Reader(data)
    reader.take(4)
    (version,) = struct.unpack("<I", reader.take(4))
    if version & 0xFF != 2 or version & (_FLAG_TILED | _FLAG_DEEP):
        raise ResultRejected("EXR is tiled, deep or of an unknown version", version=version)
    name_limit = 255 if version & _FLAG_LONG_NAMES else 31
    multipart = bool(version & _FLAG_MULTIPART)
    parts = [_header(reader, name_limit, multipart)]
    while multipart and not reader.peek_nul():
        parts.append(_header(reader, name_limit, multipart))
        if len(parts) > MAX_PARTS:
            raise ResultRejected(f"EXR has more than {MAX_PARTS} parts")
    if multipart:
        reader.take(1)
    return parts, reader.pos


def check(data: bytes, width: int, height: int) -> list[PartHeader]:
    """The parts of ``data``, refused unless each is a ``width`` x ``height`` scanline image
    at the origin with 1-4 half/float channels per pass, losslessly compressed, and the file is no
    longer than such pixels can take. Nothing is decoded."""
    parts, header_end = parse(data)
    window = (0, 0, width - 1, height - 1)
    for part in parts:
        if part.kind != "scanlineimage":
            raise ResultRejected(f"EXR part {part.name!r} is a {part.kind}")
        if part.data_window != window or part.display_window != window:
            raise ResultRejected(
                f"EXR part {part.name!r} is {part.width}x{part.height}, the unit is "
                f"{width}x{height}", data_window=list(part.data_window))
        if part.compression not in LOSSLESS:
            raise ResultRejected(f"EXR part {part.name!r} uses compression "
                                 f"{part.compression}; lossless only")
        if not part.channels:
            raise ResultRejected(f"EXR part {part.name!r} has no channels")
    if sum(len(p.channels) for p in parts) > MAX_CHANNELS:
        raise ResultRejected(f"EXR has more than {MAX_CHANNELS} channels in all")
    limit = header_end + sum(_stored_limit(p, height) for p in parts)
    if len(data) > limit:
        raise ResultRejected(f"EXR is {len(data)} bytes, its pixels take at most {limit}",
                             size=len(data), limit=limit)
    return parts


def _stored_limit(part: PartHeader, height: int) -> int:
    """Most bytes an honest part takes: OpenEXR stores a chunk raw when compressing does
    not help, so raw pixels plus the offset table and 12-byte chunk headers."""
    chunks = -(-height // LINES_PER_CHUNK[part.compression])
    return part.raw_bytes() + chunks * (8 + 12)
