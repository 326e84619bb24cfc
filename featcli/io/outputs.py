"""Safe output files: atomic writes, no silent overwrite, never an input file, all of an image's files or none.

Every file featcli writes goes through :class:`PendingOutputs` (or :func:`atomic_write`, one file): the data
is written to a hidden temporary file (``.NAME.XXXX.part``) in the destination folder and published under
its final name only once complete, so an interrupted or failing run leaves no half-written file behind.

Publishing never replaces a file that appeared after the run checked the name: without ``force`` it is a
create-exclusive step (a hard link of the temp file, which fails if the name exists, then the temp file
goes; where the filesystem has no hard links, an ``O_EXCL`` reservation of the name that the temp file then
replaces). Two runs never overwrite each other: the second to publish a name gets an :class:`OutputError`
(:func:`resolve_taken` lets one run's retried task accept its own file). ``force`` renames over the name.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from featcli.errors import OutputError
from featcli.io.sections import defer_interrupt, uninterrupted

__all__ = ["InputSet", "PendingOutputs", "atomic_open", "atomic_write", "check_output", "defer_interrupt", "path_key",
           "resolve_taken", "uninterrupted", "watch_outputs"]

RACED = "already exists (created by another process while this run was writing; use --force to overwrite)"

#: errors of os.link that mean "this filesystem has no hard links", not "the name is taken"
_NO_LINKS = {errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EMLINK, errno.EXDEV, errno.EINVAL,
             getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.EOPNOTSUPP}


#: The output name that means standard output (``-o -``): the bytes are written there once all files are.
STDOUT = "-"


def path_key(path: str | os.PathLike[str]) -> str:
    """The name a path is compared by: absolute, symlinks resolved, case-folded where the OS folds case."""
    return os.path.normcase(os.path.realpath(path))


class InputSet:
    """The input files of a whole run, which no output may name (not even with ``--force``).

    Inputs are compared by resolved path and, where they exist, by file identity (device and inode), so a
    hard link or a symlink to an input is an input too. Built once per run, so checking an output costs one
    ``stat`` and one ``realpath`` however many inputs the run has.
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]] = ()) -> None:
        self._keys: dict[str, str] = {}
        self._ids: dict[tuple[int, int], str] = {}
        for p in paths:
            if str(p) in ("-", "", "<stdin>"):
                continue
            self._keys.setdefault(path_key(p), str(p))
            with contextlib.suppress(OSError):
                st = os.stat(p)
                self._ids.setdefault((st.st_dev, st.st_ino), str(p))

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, path: str | os.PathLike[str]) -> str | None:
        """The input that ``path`` names (as the run was given it), or None."""
        hit = self._keys.get(path_key(path))
        st = _stat(path) if hit is None else None
        return hit if st is None else self._ids.get((st.st_dev, st.st_ino))


def _as_inputs(inputs: InputSet | Iterable[str]) -> InputSet:
    return inputs if isinstance(inputs, InputSet) else InputSet(inputs)


def check_output(path: str | os.PathLike[str], *, force: bool = False,
                 inputs: InputSet | Iterable[str] = ()) -> Path:
    """Validate that ``path`` may be written.

    Raises:
        OutputError: ``path`` is one of ``inputs`` (never overwritten, even with ``force``), is a
            directory, exists and ``force`` is false, or its folder does not exist.
    """
    p = Path(path)
    if str(path) == STDOUT:
        return p
    src = _as_inputs(inputs).find(p)
    if src is not None:
        which = "" if path_key(src) == path_key(p) else f" ({src})"
        raise OutputError(f"refusing to overwrite an input file{which}", path=str(p))
    if p.is_dir():
        raise OutputError("is a directory; give a file name", path=str(p))
    if p.exists() and not force and not (_resolvers and _resolvers[-1](None, p)):
        raise OutputError("already exists (use --force to overwrite)", path=str(p))
    check_folder(p.parent if str(p.parent) else Path("."), path=str(p))
    return p


def check_folder(folder: Path, *, path: str | None = None) -> None:
    """Refuse a folder that cannot exist: a missing one is fine (created as ``mkdir -p`` does, when the
    first file is written into it) unless a file stands where a folder must be, or no ancestor is writable."""
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"cannot create folder {str(folder)!r}: {str(probe)!r} is a file", path=path)
    if probe != folder and not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create folder {str(folder)!r}: {str(probe)!r} is not writable", path=path)


def _make_folders(folder: Path) -> list[Path]:
    """``mkdir -p folder``; the folders it created, outermost first (removed again if nothing lands there)."""
    made: list[Path] = []
    probe = folder
    while str(probe) and not probe.exists() and probe.parent != probe:
        made.insert(0, probe)
        probe = probe.parent
    for d in made:
        with contextlib.suppress(FileExistsError):
            d.mkdir()
    return made


def _stat(path: str | os.PathLike[str]) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def _identity(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    st = _stat(path)
    return None if st is None else (st.st_dev, st.st_ino)


def _unlink_if_ours(path: Path, ident: tuple[int, int] | None) -> None:
    """Remove ``path`` only while it is still the file this run published (never someone else's)."""
    if ident is not None and _identity(path) == ident:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _mkstemp(p: Path) -> tuple[int, str]:
    """A new hidden temp file ``.NAME.XXXX.part`` beside ``p`` (tempfile imported here: the CLI imports this
    module at start-up, and ``featcli shape`` needs no temp file)."""
    import tempfile

    if str(p.parent) and not p.parent.is_dir():
        _make_folders(p.parent)
    return tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent if str(p.parent) else ".")


_resolvers: list[Callable[[str | None, Path], bool]] = []


@contextlib.contextmanager
def resolve_taken(resolve: Callable[[str | None, Path], bool]) -> Iterator[None]:
    """Within the block (every thread of this process), a publish that finds its name taken asks
    ``resolve(tmp, final)`` before failing: True means ``final`` now is this output (``resolve`` removed ``tmp``
    or renamed it over ``final``; either way not the publisher's to remove), False fails (``already exists``).
    :func:`check_output` asks ``resolve(None, path)`` of an existing file: True lets this run write it."""
    _resolvers.append(resolve)
    try:
        yield
    finally:
        _resolvers.remove(resolve)


_watchers: list[Callable[[str, list[str]], None]] = []


@contextlib.contextmanager
def watch_outputs(note: Callable[[str, list[str]], None]) -> Iterator[None]:
    """Within the block (every thread of this process), :class:`PendingOutputs` tells ``note(event, names)``
    what it is about to do, before doing it, so that another process can undo it if this one dies
    (:mod:`featcli.run.processes` keeps such a journal of each worker):

    - ``"write"``: a temp file beside each name is about to be made (checked: the name was free, or ``force``);
    - ``"publish"``: the names are about to be given to their temp files;
    - ``"gone"``: the names' temp files, and their files if published, were removed again (a failed image).

    Names published and kept are confirmed by the image's record, not here."""
    _watchers.append(note)
    try:
        yield
    finally:
        _watchers.remove(note)


def _note(event: str, names: list[str]) -> None:
    if _watchers and names:
        _watchers[-1](event, names)


def _taken(tmp: str, final: Path) -> bool:
    if not (_resolvers and _resolvers[-1](tmp, final)):
        raise OutputError(RACED, path=str(final))
    return True


def publish(tmp: str, final: Path, *, force: bool = False) -> bool:
    """Give the finished temp file ``tmp`` its final name; ``tmp`` is gone afterwards (or on error). True
    when a :func:`resolve_taken` block found ``final`` already published (by another attempt of the run).

    Raises:
        OutputError: without ``force``, ``final`` exists (someone created it since it was checked).
        OSError: the filesystem refused.
    """
    if force:
        os.replace(tmp, final)
        return False
    try:
        os.link(tmp, final)
    except FileExistsError:
        return _taken(tmp, final)
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        return _reserve_and_replace(tmp, final)
    with contextlib.suppress(OSError):
        os.unlink(tmp)
    return False


def _reserve_and_replace(tmp: str, final: Path) -> bool:
    """Publishing without hard links: create ``final`` exclusively (empty), then rename ``tmp`` over it."""
    try:
        fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _taken(tmp, final)
    ident = _identity(final)
    os.close(fd)
    try:
        os.replace(tmp, final)
    except BaseException:
        _unlink_if_ours(final, ident)
        raise
    return False


class PendingOutputs:
    """The files of one image: each written to a temp file, then all published together, or none.

    ``write(path, fn)`` checks ``path`` (:func:`check_output`), calls ``fn(fh)`` on a temp file beside it and
    keeps the temp file; :meth:`publish` gives every temp file its name. Leaving the ``with`` block by an
    exception (``KeyboardInterrupt`` included, even after :meth:`publish`) removes the temp files and every
    file this object published (only while it is still the file it published), so an image's outputs are
    all written or none. Use it as a context manager: leaving the block releases what it holds.

    >>> with PendingOutputs() as out:  # doctest: +SKIP
    ...     out.write("a.png", encode_a)
    ...     out.write("a.npz", encode_b)  # raises: a.png was never published
    ...     paths = out.publish()
    """

    def __init__(self, *, force: bool = False, inputs: InputSet | Iterable[str] = ()) -> None:
        self.force = force
        self.inputs = _as_inputs(inputs)
        self._temps: list[tuple[str, Path]] = []
        self._published: list[tuple[Path, tuple[int, int] | None]] = []
        self._names: dict[str, Path] = {}
        # One open descriptor per file written (POSIX): while it is open the file's inode number cannot be
        # reused, so "still the file we published" is exact. (Windows cannot rename an open file.)
        self._held: dict[str, int] = {}
        self._stdout: bytes | None = None

    def __enter__(self) -> PendingOutputs:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.discard(published=kind is not None)

    def write(self, path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
        """Check ``path`` and write its content to a temp file beside it (published by :meth:`publish`).

        ``-`` (:data:`STDOUT`) is kept in memory and written to standard output after the files publish.
        """
        if str(path) == STDOUT:
            import io

            buf = io.BytesIO()
            write(buf)
            self._stdout = buf.getvalue()
            return Path(STDOUT)
        p = check_output(path, force=self.force, inputs=self.inputs)
        key = path_key(p)
        if key in self._names:
            raise OutputError(f"written twice by one image (also as {str(self._names[key])!r})", path=str(p))
        self._names[key] = p
        _note("write", [str(p)])
        try:
            fd, tmp = _mkstemp(p)
        except OSError as exc:
            raise OutputError(f"cannot write: {exc.strerror or exc}", path=str(p)) from None
        self._temps.append((tmp, p))
        try:
            if os.name == "posix":
                self._held[tmp] = os.dup(fd)
            with os.fdopen(fd, "wb") as fh:
                write(fh)
            os.chmod(tmp, 0o644 & ~_UMASK)
        except OSError as exc:
            raise OutputError(f"cannot write: {exc.strerror or exc}", path=str(p)) from None
        return p

    def publish(self) -> list[Path]:
        """Give every temp file its final name, in the order written; on any failure, undo them all."""
        with uninterrupted():
            paths = self._publish()
            if self._stdout is not None:
                import sys

                try:
                    sys.stdout.buffer.write(self._stdout)
                    sys.stdout.buffer.flush()
                except OSError as exc:
                    self._discard(True)
                    raise OutputError(f"cannot write to standard output: {exc.strerror or exc}") from None
                paths.append(Path(STDOUT))
            return paths

    def _publish(self) -> list[Path]:
        _note("publish", [str(p) for _, p in self._temps])
        try:
            while self._temps:
                tmp, p = self._temps[0]
                ident = _identity(tmp)
                if tmp in self._held:
                    self._held[str(p)] = self._held.pop(tmp)
                try:
                    if publish(tmp, p, force=self.force):
                        ident = None  # published by another attempt of this run: not this object's to remove
                except OSError as exc:
                    raise OutputError(f"cannot write: {exc.strerror or exc}", path=str(p)) from None
                self._temps.pop(0)
                self._published.append((p, ident))
        except BaseException:
            self._discard(True)
            raise
        return [p for p, _ in self._published]

    def discard(self, *, published: bool = True) -> None:
        """Remove the temp files and (``published``) the files this object published."""
        with uninterrupted():
            self._discard(published)

    def _discard(self, published: bool) -> None:
        gone = [str(p) for _, p in self._temps]
        for tmp, _ in self._temps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._temps.clear()
        if published:
            gone += [str(p) for p, _ in self._published]
            for p, ident in reversed(self._published):
                _unlink_if_ours(p, ident)
            self._published.clear()
        self._release()
        _note("gone", gone)

    def _release(self) -> None:
        for fd in self._held.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held.clear()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; publish it as ``path`` when the block succeeds (without ``force``
    an existing ``path`` is never replaced: :func:`publish`)."""
    p = Path(path)
    fd, tmp = _mkstemp(p)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
        os.chmod(tmp, 0o644 & ~_UMASK)
        publish(tmp, p, force=force)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *, force: bool = False,
                 inputs: InputSet | Iterable[str] = ()) -> Path:
    """Check ``path`` with :func:`check_output`, call ``write(fh)`` on a temp file, then publish it."""
    with PendingOutputs(force=force, inputs=inputs) as out:
        out.write(path, write)
        (p,) = out.publish()
    return p


_UMASK = os.umask(0)  # read at import (one thread): os.umask has no read-only form
os.umask(_UMASK)
