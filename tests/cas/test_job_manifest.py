"""Job manifests: canonical text and workhash, strict validation of untrusted input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitwrk.cas import manifest as manifest_module
from bitwrk.cas.chunking import ChunkRef, FileEntry
from bitwrk.cas.manifest import JobManifest, canonical_json
from bitwrk.cas.paths import check_names, safe_join
from bitwrk.cas.store import ChunkStore
from bitwrk.errors import ManifestError, TooLarge
from tests.cas.conftest import data_of

H1, H2 = "ab" * 32, "cd" * 32
SPEC = {"frame": 1, "rect": [0, 64, 0, 32], "engine": "CYCLES", "exposure": 0.5}


def doc(files: list[Any] | None = None, **top: Any) -> dict[str, Any]:
    if files is None:
        files = [file_doc()]
    return {"version": 1, "spec": SPEC, "files": files, **top}


def file_doc(name: Any = "scene.blend", **fields: Any) -> dict[str, Any]:
    return {"name": name, "size": 30, "sha256": H1, "chunks": [[H1, 10], [H2, 20]], **fields}


def parse(value: Any) -> JobManifest:
    return JobManifest.from_json(canonical_json(value))


def test_canonical_text_and_workhash() -> None:
    m = parse(doc())
    raw = m.to_json()
    assert raw == json.dumps(doc(), sort_keys=True, separators=(",", ":")).encode()
    assert m.workhash == hashlib.sha256(raw).hexdigest()
    assert m.files == (FileEntry("scene.blend", 30, H1, (ChunkRef(H1, 10), ChunkRef(H2, 20))),)
    assert m.spec == SPEC and m.total_size == 30


def test_non_ascii_names_are_escaped() -> None:
    m = JobManifest({"a": 1}, (FileEntry("tex/wöod.png", 0, H1, ()),))
    assert b"w\\u00f6od" in m.to_json()
    assert JobManifest.from_json(m.to_json()) == m


@pytest.mark.parametrize("raw", [
    json.dumps(doc()).encode(),  # whitespace
    json.dumps(doc(), separators=(",", ":")).encode(),  # unsorted keys
    canonical_json(doc())[:-1] + b" }",
    canonical_json(doc()).replace(b'"version":1', b'"version":1.0'),
])
def test_other_spellings_are_refused(raw: bytes) -> None:
    with pytest.raises(ManifestError):
        JobManifest.from_json(raw)


@pytest.mark.parametrize("raw", [
    b"", b"[]", b"not json", "{\"é\":1}".encode(), b'{"files":[],"spec":{},"version":NaN}',
    b"[" * 100_000 + b"]" * 100_000,
])
def test_garbage_is_refused(raw: bytes) -> None:
    with pytest.raises(ManifestError):
        JobManifest.from_json(raw)


@pytest.mark.parametrize(("value", "message"), [
    ({"spec": {}, "files": []}, "exactly"),
    (doc(extra=1), "exactly"),
    (doc(version=2), "version"),
    (doc(version=True), "version"),
    (doc(spec=[]), "'spec'"),
    ({"version": 1, "spec": SPEC, "files": {}}, "'files'"),
    (doc([file_doc(size=31)]), "sum of its chunk sizes"),
    (doc([file_doc(size=-1)]), "sum"),
    (doc([file_doc(size=True, chunks=[[H1, 1]])]), "sum"),
    (doc([file_doc(sha256=H1.upper())]), "sha256"),
    (doc([file_doc(sha256=H1[:-1])]), "sha256"),
    (doc([file_doc(chunks=[[H1, 0], [H2, 30]])]), "each chunk"),
    (doc([file_doc(chunks=[[H1, 10, 1], [H2, 20]])]), "each chunk"),
    (doc([file_doc(chunks=[{"sha256": H1, "size": 30}])]), "each chunk"),
    (doc([file_doc(chunks=[["g" * 64, 30]])]), "each chunk"),
    (doc([file_doc(chunks=[[H1, 5 * 1024 * 1024]], size=5 * 1024 * 1024)]), "each chunk"),
    (doc([file_doc(name=7)]), "string"),
    (doc([{"name": "a", "size": 0, "sha256": H1}]), "exactly"),
    (doc([file_doc("a"), file_doc("a")]), "same name"),
])
def test_invalid_manifests_are_refused(value: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse(value)


BAD_NAMES = [
    "", "/etc/passwd", "../x", "a/../../x", "a/./b", "./a", "a//b", "a/", "..",
    "a\\..\\b", "C:/x", "c:x", "a\x00b", "a\nb", "x/\x7f", "CON", "nul.txt", "a/com1.png",
    "dir./x", "name ", "x" * 256, "a/" * 600,
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_names_are_refused(name: str) -> None:
    with pytest.raises(ManifestError):
        parse(doc([file_doc(name)]))


@pytest.mark.parametrize("name", ["scene.blend", "tex/wood.png", "a b/ü.png", "..hidden",
                                  "a..b/c", "console.txt", "x" * 255])
def test_safe_names_are_accepted(name: str) -> None:
    assert parse(doc([file_doc(name)])).files[0].name == name


@pytest.mark.parametrize("names", [["Tex.png", "tex.png"], ["a", "a/b"], ["A/b/c", "a/b"],
                                   ["\u00e9.png", "e\u0301.png"]])
def test_colliding_names_are_refused(names: list[str]) -> None:
    with pytest.raises(ManifestError):
        check_names(names)


def test_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TooLarge):
        JobManifest.from_json(b" " * (manifest_module.MAX_MANIFEST_BYTES + 1))
    monkeypatch.setattr(manifest_module, "MAX_FILES", 2)
    with pytest.raises(ManifestError, match="too many files"):
        parse(doc([file_doc(f"f{i}") for i in range(3)]))
    monkeypatch.setattr(manifest_module, "MAX_CHUNKS", 3)
    with pytest.raises(ManifestError, match="too many chunks"):
        parse(doc([file_doc("a"), file_doc("b")]))
    with pytest.raises(ManifestError, match="too many chunks"):
        JobManifest({}, (FileEntry("a", 4, H1, (ChunkRef(H1, 1),) * 4),)).to_json()


def test_spec_must_be_plain_finite_json() -> None:
    for spec in ({"x": float("nan")}, {"x": {1, 2}}, {"x": b"raw"}):
        with pytest.raises(ManifestError, match="spec"):
            JobManifest(spec, ()).to_json()


def test_from_files_needed_chunks_and_assemble(tmp_path: Path, store: ChunkStore,
                                               seller: ChunkStore) -> None:
    scene, tex = data_of(400_000, 1), data_of(50_000, 2)
    (tmp_path / "s.blend").write_bytes(scene)
    (tmp_path / "t.png").write_bytes(tex + tex)
    m = JobManifest.from_files(SPEC, {"s.blend": tmp_path / "s.blend",
                                      "tex/t.png": tmp_path / "t.png"}, store)
    assert [f.name for f in m.files] == ["s.blend", "tex/t.png"]
    assert m.needed_chunks(store) == []
    assert m.needed_chunks(seller) == m.chunks()
    for ref in m.chunks():
        seller.put(store.get(ref.sha256), expected=ref.sha256)
    assert m.needed_chunks(seller) == []
    out = m.assemble(seller, tmp_path / "job")
    assert [p.read_bytes() for p in out] == [scene, tex + tex]


def test_from_files_checks_names(tmp_path: Path, store: ChunkStore) -> None:
    with pytest.raises(ManifestError):
        JobManifest.from_files({}, {"../s.blend": tmp_path / "s.blend"}, store)


def test_safe_join_refuses_a_planted_symlink(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    (job / "link").symlink_to(tmp_path)
    with pytest.raises(ManifestError, match="outside"):
        safe_join(job, "link/x")
    assert safe_join(job, "a/b") == job / "a" / "b"


NAME = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12)
CHUNK = st.builds(ChunkRef, st.binary(min_size=32, max_size=32).map(bytes.hex),
                  st.integers(1, 1 << 20))


@settings(max_examples=50, deadline=None)
@given(names=st.lists(st.lists(NAME, min_size=1, max_size=3).map("/".join), max_size=5,
                      unique_by=str.lower),
       chunks=st.lists(st.lists(CHUNK, max_size=4), min_size=5, max_size=5),
       spec=st.dictionaries(NAME, st.integers() | st.text() | st.floats(allow_nan=False,
                                                                        allow_infinity=False)))
def test_round_trip_property(names: list[str], chunks: list[list[ChunkRef]],
                             spec: dict[str, Any]) -> None:
    try:
        check_names(names)
    except ManifestError:
        return  # a file-vs-directory clash the strategy happened to make
    files = tuple(FileEntry(n, sum(c.size for c in cs), H1, tuple(cs))
                  for n, cs in zip(names, chunks, strict=False))
    m = JobManifest(spec, files)
    again = JobManifest.from_json(m.to_json())
    assert again == m and again.workhash == m.workhash
