"""Bounds on zip archives (``.npz`` files, PyTorch zip checkpoints), checked before any member is decompressed.

Python's zip reader stops a member at the size the archive declares for it, so what a member can decompress
to is its declared size; :func:`check_members` bounds that size, and its ratio to the compressed size (a zip
bomb: a few MB of deflated zeros that declare GBs). A size that lies low only cuts the data short, which the
reader of the member (the ``.npy`` header check) then finds truncated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from featcli.errors import WeightsError

#: Largest ratio of a compressed member's declared size to its compressed size: deflate reaches about 1000:1
#: on zeros, real weights compress less than 2:1.
MAX_RATIO = 100
#: Members that declare up to this many bytes pass whatever their ratio (a small, very regular kernel file).
RATIO_FLOOR = 1 << 20


def check_members(p: Path, zf: Any, *, limit: int, stored_limit: int | None = None) -> None:
    """Refuse the archive ``zf`` (a ``zipfile.ZipFile`` of ``p``) when a compressed member declares more than
    ``limit`` bytes (an uncompressed one: ``stored_limit``, None for no limit) or more than :data:`MAX_RATIO`
    times its compressed size (above :data:`RATIO_FLOOR`).

    Raises:
        WeightsError: naming the file and the member (its name escaped and cut short).
    """
    import zipfile

    for info in zf.infolist():
        stored = info.compress_type == zipfile.ZIP_STORED
        cap = stored_limit if stored else limit
        name = repr(info.filename[:60])
        if cap is not None and info.file_size > cap:
            raise WeightsError(f"{p}: zip member {name} declares {info.file_size:,} bytes, above the "
                               f"{cap:,} featcli reads")
        if not stored and info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * info.compress_size:
            raise WeightsError(f"{p}: zip member {name} declares {info.file_size:,} bytes from "
                               f"{info.compress_size:,} compressed, more than {MAX_RATIO}:1 (a zip bomb?)")
