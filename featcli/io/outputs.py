"""Safe output files: atomic writes, no silent overwrite, never an input file.

Every file featcli writes goes through :func:`atomic_write`: the data is written to a temporary file
in the destination folder and renamed over the final name only once complete, so an interrupted or
failing run leaves no half-written file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from featcli.errors import OutputError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike[str], *, force: bool = False, inputs: Iterable[str] = ()) -> Path:
    """Validate that ``path`` may be written.

    Raises:
        OutputError: ``path`` is one of ``inputs`` (never overwritten, even with ``force``), is a
            directory, exists and ``force`` is false, or its folder does not exist.
    """
    p = Path(path)
    for src in inputs:
        if src not in ("-", "") and (_same_file(p, Path(src)) or p.resolve() == Path(src).resolve()):
            raise OutputError("refusing to overwrite an input file", path=str(p))
    if p.is_dir():
        raise OutputError("is a directory; give a file name", path=str(p))
    if p.exists() and not force:
        raise OutputError("already exists (use --force to overwrite)", path=str(p))
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"folder {str(parent)!r} does not exist", path=str(p))
    return p


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block succeeds."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent if str(p.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], object],
    *,
    force: bool = False,
    inputs: Iterable[str] = (),
) -> Path:
    """Check ``path`` with :func:`check_output`, then call ``write(fh)`` on a temp file and rename."""
    p = check_output(path, force=force, inputs=inputs)
    try:
        with atomic_open(p) as fh:
            write(fh)
    except OSError as exc:
        raise OutputError(f"cannot write: {exc.strerror or exc}", path=str(p)) from None
    return p


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return _UMASK
