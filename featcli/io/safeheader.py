"""The header of a ``.safetensors`` file, read with bounds before anything is allocated.

One reader for both places featcli opens safetensors files: a checkpoint's tensors
(:mod:`featcli.io.checkpoints`, ``conv:w=FILE.safetensors:KEY``) and the featcli model file
(:mod:`featcli.io.modelfile`). The 8-byte header length is checked against a cap and the file size before
the JSON is read; every tensor's dtype, shape and byte range are checked against the file size, and the
ranges must tile the data region exactly (no overlap, no hole), so a header cannot declare more data than the
file holds. Refusals are one :class:`WeightsError` naming the file, never echoing its bytes.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featcli.errors import WeightsError
from featcli.stages.grammar import MAX_INT

#: Largest JSON header read (safetensors' own reader allows 100 MB; featcli's files need far less).
MAX_HEADER_BYTES = 16 << 20
MAX_TENSORS = 10_000
MAX_NDIM = 8
#: Every safetensors dtype code -> (torch dtype name, bytes per element).
DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
          "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1), "C64": ("complex64", 8),
          "BOOL": ("bool", 1), "I8": ("int8", 1), "U8": ("uint8", 1), "I16": ("int16", 2), "U16": ("uint16", 2),
          "I32": ("int32", 4), "U32": ("uint32", 4), "I64": ("int64", 8), "U64": ("uint64", 8)}

#: Makes the one-line refusal of a file: ``bad(path, reason)``.
Bad = Callable[[Path, str], WeightsError]


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header declares it (offsets are relative to the data region)."""

    name: str
    dtype: str  #: torch dtype name: ``float32``, ``int64``...
    shape: tuple[int, ...]
    begin: int
    end: int


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k[:40]!r} appears twice")
        out[k] = v
    return out


def no_constant(name: str) -> Any:
    """``json.loads(parse_constant=...)``: NaN and Infinity are not JSON numbers."""
    raise ValueError(f"{name} is not a JSON number")


def read_header(p: Path, bad: Bad) -> tuple[dict[str, Any], int, int]:
    """The JSON header of ``p``, the data region's start and its size; the length checked before reading.

    Raises:
        WeightsError: ``bad(p, reason)``, or the file cannot be read.
    """
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise bad(p, "the file is empty" if not head else f"the file is {len(head)} bytes long")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or n > size - 8:
                # the 8 bytes are the file's content: say what is wrong with them, never echo them
                raise bad(p, f"its first 8 bytes (the header length) give more than the {size - 8:,} bytes after "
                             f"them, or more than featcli's {MAX_HEADER_BYTES >> 20} MiB header cap; "
                             "not a safetensors file, or truncated")
            raw = fh.read(n)
    except OSError as exc:
        raise WeightsError(f"cannot read: {exc.strerror or exc}", path=str(p)[:300]) from None
    if len(raw) != n:
        raise bad(p, "the file changed while it was read")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=no_constant)
    except UnicodeDecodeError as exc:
        raise bad(p, f"its header is not UTF-8 text (byte {8 + exc.start:,}); not a safetensors file") from None
    except json.JSONDecodeError as exc:  # the message names a position, never the text
        raise bad(p, f"its header is not JSON ({exc.msg} at byte {8 + exc.pos:,}); not a safetensors file") \
            from None
    except (ValueError, RecursionError) as exc:  # featcli's own hooks (a key twice, NaN): their words
        raise bad(p, f"its header is not JSON ({str(exc)[:100]}); not a safetensors file") from None
    if not isinstance(header, dict):
        raise bad(p, "its header is not a JSON object; not a safetensors file")
    return header, 8 + n, size - 8 - n


def _entry(p: Path, name: str, info: Any, data_size: int, dtypes: Mapping[str, tuple[str, int]],
           max_bytes: int | None, bad: Bad) -> TensorEntry:
    where = f"tensor {name[:60]!r}"
    if not name or len(name) > 1000:
        raise bad(p, "a tensor has an empty or over-long name")
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise bad(p, f"{where}: expected dtype, shape and data_offsets")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(code, str) or code not in dtypes:
        raise bad(p, f"{where}: dtype {str(code)[:20]!r}; featcli reads {', '.join(dtypes)}")
    if (not isinstance(shape, list) or len(shape) > MAX_NDIM
            or not all(type(s) is int and 0 <= s <= MAX_INT for s in shape)):
        raise bad(p, f"{where}: shape {str(shape)[:60]} is not a list of at most {MAX_NDIM} sizes")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise bad(p, f"{where}: data_offsets {str(offsets)[:60]} is not [begin, end]")
    dtype, item = dtypes[code]
    nbytes = math.prod(shape) * item
    if max_bytes is not None and nbytes > max_bytes:
        raise bad(p, f"{where}: {shape} {dtype} is {nbytes:,} bytes, above the {max_bytes >> 20} MiB featcli loads")
    if offsets[1] > data_size:
        raise bad(p, f"{where}: its data ends at byte {offsets[1]:,} past the end of the file's "
                     f"{data_size:,} data bytes (truncated?)")
    if offsets[1] - offsets[0] != nbytes:
        raise bad(p, f"{where}: shape {shape} {dtype} needs {nbytes:,} bytes but its offsets span "
                     f"{offsets[1] - offsets[0]:,}")
    return TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])


def tensor_entries(p: Path, header: Mapping[str, Any], data_size: int, bad: Bad, *,
                   dtypes: Mapping[str, tuple[str, int]] = DTYPES, max_bytes: int | None = None
                   ) -> dict[str, TensorEntry]:
    """Every tensor the header declares, checked (see the module docstring); ``max_bytes``: refuse any larger.

    Raises:
        WeightsError: ``bad(p, reason)`` for the first thing wrong.
    """
    names = [k for k in header if k != "__metadata__"]
    if len(names) > MAX_TENSORS:
        raise bad(p, f"{len(names):,} tensors, above the {MAX_TENSORS:,} featcli reads")
    entries = {k: _entry(p, k, header[k], data_size, dtypes, max_bytes, bad) for k in names}
    pos = 0
    for e in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if e.begin < pos:
            raise bad(p, f"tensor {e.name[:60]!r} overlaps another tensor's bytes")
        if e.begin > pos:
            raise bad(p, f"{e.begin - pos:,} bytes before tensor {e.name[:60]!r} belong to no tensor")
        pos = e.end
    if pos != data_size:
        raise bad(p, f"{data_size - pos:,} bytes after the last tensor belong to no tensor")
    return entries
