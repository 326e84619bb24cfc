"""The one cache of kernel resolution: a result is reused while the files it was read from are unchanged.

Resolving a reference reads files: the library folders (built-in and user), a kernel text, ``.npy`` or
``.toml`` file, a checkpoint. Whatever computes a cached result declares each file or folder it reads
with :func:`depends_on`, *before* reading it; :func:`cached` keeps the result with those dependencies
and their stamps, and hands it out again only while every stamp is the same. A file's stamp is one
``stat``: ``(st_mtime_ns, st_size, st_ino)`` (``None`` when it is missing); a folder's is its own
``(st_mtime_ns, st_ino)`` plus the stamps of the kernel files in it, so an edited, replaced, added or
removed file gives a fresh result on the next call. Every call checks the stamps (no time-based
re-validation): a long ``featcli shape -`` session sees an edit at once.

Results nest: a stage's kernels depend on the library folders whose own parsed contents are cached here
too, and a hit inside a computation passes its dependencies on to the enclosing result. Failures are
never cached. The least recently used results are dropped beyond :data:`MAX_ENTRIES`.

Cached values are shared between callers (tensors included): treat them as read-only.

One limit, as for ``make``: a file rewritten with the same size within one tick of the file system's
clock (and in place, so with the same inode) keeps its old stamp.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextvars import ContextVar
from pathlib import Path
from typing import Literal, TypeVar, cast

T = TypeVar("T")
Kind = Literal["file", "folder"]
Dep = tuple[Kind, str]
FileStamp = tuple[int, int, int] | None
FolderStamp = tuple[tuple[int, int], tuple[tuple[str, FileStamp], ...]] | None
Stamp = FileStamp | FolderStamp

#: Most results kept; a long ``featcli shape -`` session may name many references.
MAX_ENTRIES = 512
#: The files of a kernel folder that its stamp covers (what :func:`featcli.kernels.library.library` reads).
FOLDER_SUFFIXES = (".toml", ".txt", ".npy")

_lock = threading.Lock()
_store: OrderedDict[Hashable, tuple[object, tuple[tuple[Dep, Stamp], ...]]] = OrderedDict()
_recording: ContextVar[tuple[dict[Dep, Stamp], ...]] = ContextVar("featcli_kernel_dependencies", default=())


def file_stamp(path: str) -> FileStamp:
    """``(st_mtime_ns, st_size, st_ino)`` of ``path``, or None when it does not exist (or cannot)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def folder_stamp(path: str) -> FolderStamp:
    """The folder's own ``(st_mtime_ns, st_ino)`` and the path and stamp of each kernel file in it, or None.

    Adding, removing or renaming a file changes the folder's own mtime, so checking a folder needs no
    listing: one ``stat`` of the folder and one per kernel file (:func:`_folder_unchanged`).
    """
    try:
        st = os.stat(path)
        with os.scandir(path) as it:
            files = sorted(e.path for e in it if e.name.endswith(FOLDER_SUFFIXES))
    except (OSError, ValueError):
        return None
    return (st.st_mtime_ns, st.st_ino), tuple((f, file_stamp(f)) for f in files)


def _file_unchanged(path: str, stamp: Stamp) -> bool:
    return file_stamp(path) == stamp


def _folder_unchanged(path: str, stamp: Stamp) -> bool:
    if stamp is None:
        return folder_stamp(path) is None
    own, files = cast(tuple[tuple[int, int], tuple[tuple[str, FileStamp], ...]], stamp)
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    return (st.st_mtime_ns, st.st_ino) == own and all(file_stamp(f) == fs for f, fs in files)


_STAMPS: dict[Kind, Callable[[str], Stamp]] = {"file": file_stamp, "folder": folder_stamp}
_UNCHANGED: dict[Kind, Callable[[str, Stamp], bool]] = {"file": _file_unchanged, "folder": _folder_unchanged}


def depends_on(kind: Kind, path: str | Path) -> None:
    """Declare that the result being computed reads ``path``; call it before reading.

    Outside :func:`cached` it does nothing (no ``stat``).
    """
    recorders = _recording.get()
    if not recorders:
        return
    dep: Dep = (kind, os.fspath(path))
    stamp = _STAMPS[kind](dep[1])
    for rec in recorders:
        rec.setdefault(dep, stamp)


def _fresh(deps: tuple[tuple[Dep, Stamp], ...]) -> bool:
    return all(_UNCHANGED[kind](path, stamp) for (kind, path), stamp in deps)


def _pass_on(deps: tuple[tuple[Dep, Stamp], ...]) -> None:
    for rec in _recording.get():
        for dep, stamp in deps:
            rec.setdefault(dep, stamp)


def cached(key: Hashable, compute: Callable[[], T]) -> T:
    """``compute()``, or its earlier result for ``key`` if no file it read has changed since.

    ``key`` must hold everything the result depends on besides files (references, options, the working
    directory when paths may be relative, environment variables read).
    """
    with _lock:
        hit = _store.get(key)
    if hit is not None and _fresh(hit[1]):
        with _lock:
            if key in _store:
                _store.move_to_end(key)
        _pass_on(hit[1])
        return cast(T, hit[0])
    rec: dict[Dep, Stamp] = {}
    token = _recording.set((*_recording.get(), rec))
    try:
        value = compute()
    finally:
        _recording.reset(token)
    deps = tuple(rec.items())
    with _lock:
        _store[key] = (value, deps)
        _store.move_to_end(key)
        while len(_store) > MAX_ENTRIES:
            _store.popitem(last=False)
    return value


def clear() -> None:
    """Forget every cached result (tests; nothing else needs it)."""
    with _lock:
        _store.clear()


def size() -> int:
    """How many results are cached."""
    return len(_store)
