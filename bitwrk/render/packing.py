"""Pack a .blend and everything it reads into one self-contained folder (docs/architecture.md).

A seller renders inside a work dir and refuses a file that reads anything outside it, so
a buyer sends the .blend together with every file it depends on, each under a safe
relative name (:func:`bitwrk.cas.paths.check_name`), with the paths inside the .blend
files rewritten to point at them. The tracing and rewriting is blender-asset-tracer
(BAT) 1.23, the last release that runs without bpy on Python 3.11 (docs/measured-facts.md P1):
it parses .blend files itself, follows linked libraries into the data blocks actually
used, and rewrites path fields in place without re-saving through Blender.

On top of BAT's ``Packer`` this module

- fixes two bugs of BAT 1.23 with Blender 5.0 files, for the length of a run only: it
  missed the node-tree images of linked libraries (:func:`.bat_fixes.expand_nodetree_id`) and
  crashed on Geometry Nodes modifiers (:func:`.bat_fixes.walk_nodes_modifier`);
- places files by name: project files keep their path relative to the project root;
  files outside it go to ``_outside_project/<hash of their folder>/`` (BAT would spell
  out the buyer's absolute path, home folder and all); names a seller would refuse are
  mapped; and every path field is recomputed from the final places, so moved libraries
  keep working;
- rewrites the paths of missing files to names inside the pack, so that a buyer who
  chooses to ignore them still sends a job a seller accepts (it renders them as missing,
  as Blender does locally);
- packs every frame of a movie clip made from an image sequence (BAT packs only the
  first);
- writes rewritten, compressed .blend files uncompressed: BAT re-compresses them with
  gzip, whose header holds a time stamp and a temp file's name, so two packs of the same
  scene would differ and the chunk store could not reuse them;
- reads a file's size before handing it to BAT's copy thread, not after: BAT 1.23's
  order lost a race with that thread moving a rewritten .blend away (:class:`_QuickCopier`).
"""

from __future__ import annotations

import gzip
import os
import queue
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath

from blender_asset_tracer import bpathlib
from blender_asset_tracer.blendfile.exceptions import BlendFileError, SegmentationFault
from blender_asset_tracer.pack import (
    Aborted,
    AssetAction,
    Packer,
    PathAction,
    filesystem,
    transfer,
)
from blender_asset_tracer.trace import file_sequence, result

from ..cas.paths import check_names
from ..errors import BitwrkError, ManifestError
from .bat_fixes import bat_session
from .pack_names import NameTable, digest, safe_part

__all__ = ["OUTSIDE_DIR", "MissingFiles", "PackError", "PackResult", "check", "pack"]

OUTSIDE_DIR = "_outside_project"
_GZIP_MAGIC = b"\x1f\x8b"
_MCLIP_SRC_SEQUENCE = 1  # DNA_movieclip_types.h: MovieClip.source of an image sequence


class PackError(BitwrkError):
    """The scene cannot be packed: unreadable .blend, bad paths, a failed copy."""

    code = "pack_failed"


class MissingFiles(PackError):
    """Files the scene uses do not exist; ``missing`` lists them (absolute paths)."""

    code = "missing_files"


@dataclass(frozen=True)
class PackResult:
    """A packed scene: ``files`` maps each name in the job to its file under ``out_dir``."""

    blend: str
    files: dict[str, Path]
    missing: list[str]
    total_bytes: int

    def require_complete(self) -> None:
        """Raise :class:`MissingFiles` if any dependency was not found."""
        if self.missing:
            raise MissingFiles(f"{len(self.missing)} file(s) used by the scene are missing: "
                               + ", ".join(self.missing[:5]), missing=self.missing)


# --- the packer ------------------------------------------------------------------------------

POLL = 0.005  # seconds
COPIER_JOIN = 10.0  # seconds an aborted copy thread gets to finish its current file


class _QuickCopier(filesystem.FileCopier):
    """BAT's copier with short polls. It waits up to 0.5 s on its queue and again in
    ``join`` before noticing it is done: a small scene spent ~1 s of a 1.1 s pack there.
    Same logic as BAT 1.23's ``FileTransferer.iter_queue``/``join``, 5 ms polls."""

    def iter_queue(self) -> Iterator[transfer.QueueItem]:
        failed = self._FileTransferer__error  # type: ignore[attr-defined]  # BAT's private
        while not (self._abort.is_set() or failed.is_set()):
            try:
                src, dst, action = self.queue.get(timeout=POLL)
            except queue.Empty:
                if self.done.is_set():
                    return
                continue
            self.progress_cb.transfer_file(src, dst)
            yield src, dst, action

    def join(self, timeout: float | None = None) -> None:
        run_until = float("inf") if not timeout else time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < run_until:
            self.progress_cb.flush(timeout=POLL)

    # BAT 1.23's queue_copy/queue_move put a file on the queue and only then stat it for
    # the progress total. For a move (a rewritten .blend in BAT's temp dir) the copy
    # thread may already have moved it away by then, when the main thread is preempted
    # between the two lines on a loaded machine: the pack failed with ENOENT on
    # .../bat-...-scene.blend. So the size is read before the file is handed over.
    def queue_copy(self, src: Path, dst: PurePath) -> None:
        self._queue(src, dst, transfer.Action.COPY)

    def queue_move(self, src: Path, dst: PurePath) -> None:
        self._queue(src, dst, transfer.Action.MOVE)

    def _queue(self, src: Path, dst: PurePath, action: transfer.Action) -> None:
        if src.is_dir():
            raise TypeError(f"only files can be transferred, not directories: {src}")
        if self.done.is_set() or self._abort.is_set():
            raise RuntimeError("nothing can be queued after done_and_join or abort")
        if self.has_error:
            return  # as BAT: the copy has failed already; done_and_join reports it
        size = src.stat().st_size
        self.total_queued_bytes += size
        self.queue.put((src, dst, action))


class _Packer(Packer):
    """BAT's Packer with bitwrk's placement of files, missing files and names."""

    def __init__(self, blend: Path, project: Path | None, target: Path, *,
                 noop: bool) -> None:
        super().__init__(blend, project or blend.parent, str(target))
        self.noop = noop  # set late: BAT warns about a dry run when constructed with one
        self.auto_root = project is None
        self.planned: dict[str, Path] = {}  # name in pack -> file it is copied from
        self.clashes: set[str] = set()
        self.missing_uses: defaultdict[Path, list[result.BlockUsage]] = defaultdict(list)
        self.copier: filesystem.FileCopier | None = None  # BAT's copy thread, once started

    def _create_file_transferer(self) -> filesystem.FileCopier:
        copier = (filesystem.CompressedFileCopier if self.compress else _QuickCopier)()
        # BAT aborts its copy thread only on Ctrl-C; _run aborts it after any failure, and
        # as a daemon thread it can never keep a finished process alive.
        copier.daemon = True
        self.copier = copier
        return copier

    # strategise(): every asset is given a place by _find_new_paths
    def _visit_sequence(self, asset_path: Path, usage: result.BlockUsage) -> None:
        self._visit_asset(asset_path, usage)

    def _visit_asset(self, asset_path: Path, usage: result.BlockUsage) -> None:
        if not bytes(usage.asset_path):
            return  # no path at all: Blender reads nothing either
        if usage.block.code == b"MC" and usage.block.get(b"source") == _MCLIP_SRC_SEQUENCE:
            usage.is_sequence = True  # BAT 1.23 takes every clip for one file (its TODO)
        if _exists(asset_path, usage):
            super()._visit_asset(asset_path, usage)
        else:
            self.missing_files.add(asset_path)
            self.missing_uses[asset_path].append(usage)
            self._progress_cb.missing_file(asset_path)
            self._actions[asset_path].usages.append(usage)
        # Rewrite every path from the final places (BAT keeps in-project relative paths
        # as they are, which breaks when the .blend holding them moves).
        self._actions[asset_path].path_action = PathAction.FIND_NEW_LOCATION
        self._new_location_paths.add(asset_path)

    def _find_new_paths(self) -> None:
        if self.auto_root:
            self.project = self._guess_root()
        table = NameTable()
        main = bpathlib.make_absolute(self.blendfile)
        main_pp = self._target_path / table.claim(self._name(main, keep_base=False))
        self._output_path = self._actions[main].new_path = main_pp
        for path in sorted(self._new_location_paths - {main}):
            action = self._actions[path]
            # Sequencer strips store the folder and file name apart; BAT rewrites only
            # the folder, so such a file keeps its name.
            keep_base = any(u.path_full_field is None for u in action.usages)
            base = path.name if keep_base else safe_part(path.name)
            name = table.claim(self._name(path, keep_base=keep_base),
                               f"{OUTSIDE_DIR}/{digest(path)}/{base}")
            action.new_path = self._target_path / name

    def _guess_root(self) -> Path:
        """The deepest folder holding the .blend and every file it names by a ``//`` path.

        Relative paths are how an artist spells a project's layout; absolute ones are
        often shared libraries elsewhere on the disk.
        """
        folders = [str(bpathlib.make_absolute(self.blendfile).parent)]
        for path, action in self._actions.items():
            if any(u.asset_path.is_blendfile_relative() for u in action.usages):
                folders.append(str(path.parent))
        try:
            return Path(os.path.commonpath(folders))
        except ValueError:  # different drives
            return Path(folders[0])

    def _name(self, path: Path, *, keep_base: bool) -> str:
        base = path.name if keep_base else safe_part(path.name)
        try:
            rel = path.relative_to(bpathlib.make_absolute(self.project))
        except ValueError:
            return f"{OUTSIDE_DIR}/{digest(path.parent)}/{base}"
        return "/".join([*(safe_part(p) for p in rel.parts[:-1]), base])

    # execute()
    def _rewrite_paths(self) -> None:
        super()._rewrite_paths()
        for action in self._actions.values():
            if action.read_from is not None:
                _gunzip_in_place(action.read_from)

    def _copy_asset_and_deps(self, asset_path: Path, action: AssetAction) -> None:
        if asset_path not in self.missing_files:
            super()._copy_asset_and_deps(asset_path, action)

    def _send_to_target(self, asset_path: Path, target: PurePath,
                        may_move: bool = False) -> None:
        name = PurePath(target).relative_to(self._target_path).as_posix()
        if name in self.planned:
            if self.planned[name] != asset_path:
                self.clashes.add(name)
            return
        self.planned[name] = asset_path
        if not self.noop:
            super()._send_to_target(asset_path, target, may_move=may_move)

    def _write_info_file(self) -> None:
        """No pack-info.txt: the pack holds exactly the job's files."""

    def blend_name(self) -> str:
        return PurePath(self.output_path).relative_to(self._target_path).as_posix()

    def name_problems(self) -> list[str]:
        problems = [f"two different files would be packed as {n}" for n in sorted(self.clashes)]
        try:
            check_names(self.planned)
        except ManifestError as exc:
            problems.append(f"{exc.message}: {exc.data.get('name')}")
        return problems

    def missing_problems(self) -> list[str]:
        problems = []
        for path, uses in sorted(self.missing_uses.items()):
            users = ", ".join(sorted({f"{_block_name(u)} in {u.block.bfile.filepath.name}"
                                      for u in uses}))
            problems.append(f"missing file {path} (used by {users})")
        return problems


def _exists(asset_path: Path, usage: result.BlockUsage) -> bool:
    if not usage.is_sequence:
        return asset_path.is_file()
    try:
        return any(p.is_file() for p in file_sequence.expand_sequence(asset_path))
    except file_sequence.DoesNotExist:
        return False


def _block_name(usage: result.BlockUsage) -> str:
    return bytes(usage.block_name).decode("utf-8", "replace")


def _gunzip_in_place(path: Path) -> None:
    with path.open("rb") as f:
        if f.read(2) != _GZIP_MAGIC:
            return
    plain = path.with_name(path.name + ".raw")
    with gzip.open(path, "rb") as src, plain.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(plain, path)


# --- the API ---------------------------------------------------------------------------------

def _resolve(blend: Path, project_root: Path | None) -> tuple[Path, Path | None]:
    blend = Path(os.path.abspath(blend))
    if not blend.is_file():
        raise PackError(f"no such .blend: {blend}", path=str(blend))
    if project_root is None:
        return blend, None
    root = Path(os.path.abspath(project_root))
    if not blend.is_relative_to(root):
        raise PackError("the .blend is not inside the project root", path=str(blend),
                        project_root=str(root))
    return blend, root


def _run(packer: _Packer) -> None:
    try:
        packer.strategise()
        packer.execute()
    except (BlendFileError, SegmentationFault, OSError, Aborted) as exc:
        raise PackError(f"cannot pack {packer.blendfile.name}: {exc}",
                        path=str(packer.blendfile)) from exc
    finally:
        _stop_copier(packer.copier)


def _stop_copier(copier: filesystem.FileCopier | None) -> None:
    """Whatever happened, BAT's copy thread ends here (it is done already after a
    successful pack); left running it would keep polling its queue forever."""
    if copier is not None and copier.is_alive():
        copier.abort()
        copier.join(COPIER_JOIN)


def check(blend: Path, *, project_root: Path | None = None) -> list[str]:
    """What would make a remote render of ``blend`` differ from a local one; [] if none.

    Today that is missing files (images, sequences, libraries, fonts, ...), each with the
    data blocks that use them, and names that could not be made safe. Paths outside the
    project or absolute paths are no problem: :func:`pack` moves them into the pack.
    """
    blend, root = _resolve(blend, project_root)
    packer = _Packer(blend, root, blend.parent / ".bitwrk-check", noop=True)  # writes nothing
    with bat_session(), packer:
        _run(packer)
        return packer.missing_problems() + packer.name_problems()


def pack(blend: Path, out_dir: Path, *, project_root: Path | None = None) -> PackResult:
    """Copy ``blend`` and every file it uses into ``out_dir`` (absent or empty).

    ``project_root`` decides names: files under it keep their relative path, others go
    to ``_outside_project/``. By default it is the deepest folder holding the .blend and
    every file named by a relative ``//`` path. Paths inside the packed .blend files are
    rewritten to relative ``//...`` paths between the packed files. Missing files are
    listed in the result, not raised: see :meth:`PackResult.require_complete`. Packing
    an unchanged scene again gives files with identical bytes under identical names.
    After a :class:`PackError` ``out_dir`` may hold part of a pack.
    """
    blend, root = _resolve(blend, project_root)
    out_dir = Path(os.path.abspath(out_dir))
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise PackError("the pack folder must be new or empty", path=str(out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    packer = _Packer(blend, root, out_dir, noop=False)
    with bat_session(), packer:
        _run(packer)
        problems = packer.name_problems()
        if problems:
            raise PackError("cannot give every file a safe name", problems=problems)
        files = {name: out_dir.joinpath(*name.split("/")) for name in sorted(packer.planned)}
        return PackResult(blend=packer.blend_name(), files=files,
                          missing=sorted(map(str, packer.missing_files)),
                          total_bytes=sum(path.stat().st_size for path in files.values()))
