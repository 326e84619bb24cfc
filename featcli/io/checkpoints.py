"""Safe readers for checkpoint files: every tensor of a weight file, without running any code from it.

Formats, detected from the content (:func:`detect_format`), not the name:

- PyTorch zip and legacy checkpoints: ``torch.load(path, map_location="cpu", weights_only=True)``, always;
  a file that needs anything beyond tensors and plain containers is refused, never retried unsafely. Before
  unpickling, a zip's members are checked (:func:`featcli.io.ziplimits.check_members`) and the pickle's size.
- ``.npy`` / ``.npz``: ``allow_pickle=False``; each array's header (read with a cap: :data:`MAX_NPY_HEADER`),
  its dtype and shape, and each zip member's declared and compressed sizes, are checked against the file
  size and :data:`MAX_TENSOR_BYTES` before anything is decompressed or allocated.
- ``.safetensors``: the header checked by :mod:`featcli.io.safeheader`, tensors read by the ``safetensors``
  package (a format without code).
- TorchScript archives only with ``allow_torchscript=True`` (CLI ``--trust-torchscript``): they are code.

Checkpoints nested as ``{"state_dict": ...}``, ``{"model": ...}`` (and the other :data:`WRAPPERS`) are
unwrapped, and ``module.`` / ``_orig_mod.`` prefixes (DataParallel, torch.compile) are dropped from keys.
:func:`load_entries` lists a file's tensors with their shape and dtype; a tensor's data is read only when
its :class:`Entry` is loaded. Choosing a tensor and validating it as a weight is
:mod:`featcli.kernels.learned`'s job.

Only the standard library is imported at module level; torch and numpy inside the functions that need them.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.errors import WeightsError
from featcli.io.ziplimits import check_members

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Largest single tensor loaded (checked from headers before allocating where the format allows).
MAX_TENSOR_BYTES = 1 << 30
#: Largest ``.npy`` header read: numpy's own limit (``np.load`` refuses longer headers when it loads the
#: array), checked here before the header is read; numpy writes a few hundred bytes.
MAX_NPY_HEADER = 10_000
#: Largest pickle read: the ``data.pkl`` of a PyTorch zip checkpoint (its tensors stay in the archive), or a
#: whole legacy checkpoint (tensors inside the pickle stream, read into memory at once).
MAX_PICKLE_BYTES = 64 << 20
MAX_LEGACY_BYTES = MAX_TENSOR_BYTES
#: Names under which checkpoints nest their state dict (``{"state_dict": {...}, "optimizer": ...}``).
WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "network", "params", "ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class Entry:
    """One tensor of a weight file: its shape and dtype from the header, and how to read its data."""

    shape: tuple[int, ...]
    dtype: str
    load: Callable[[], Any]  # -> torch.Tensor


def is_file(path: str | Path) -> bool:
    """``Path.is_file`` that says False for names the OS refuses (too long, NUL bytes)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _npy_header(fh: Any, available: int, *, what: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Read a ``.npy`` header; check dtype and that the declared data fits ``available`` bytes.

    The header's length is checked against :data:`MAX_NPY_HEADER` before the header is read (numpy reads a
    header whole, up to 4 GiB from a zip member, and checks its size afterwards).
    """
    import io
    import struct

    import numpy as np
    from numpy.lib import format as npf

    head = fh.read(8)  # magic string, major and minor version
    if len(head) < 8 or not head.startswith(b"\x93NUMPY"):
        raise WeightsError(f"{what}: not a valid .npy array (it does not start with the .npy magic string)")
    version = (head[6], head[7])
    if version not in ((1, 0), (2, 0)):
        raise WeightsError(f"{what}: unsupported .npy format version {version}")
    length_fmt = "<H" if version == (1, 0) else "<I"
    raw_length = fh.read(struct.calcsize(length_fmt))
    if len(raw_length) != struct.calcsize(length_fmt):
        raise WeightsError(f"{what}: not a valid .npy array (truncated header)")
    (n,) = struct.unpack(length_fmt, raw_length)
    if n > MAX_NPY_HEADER:
        raise WeightsError(f"{what}: declares a {n:,}-byte .npy header; featcli reads headers up to "
                           f"{MAX_NPY_HEADER:,} bytes")
    text = fh.read(n)
    if len(text) != n:
        raise WeightsError(f"{what}: not a valid .npy array (truncated header)")
    try:
        buf = io.BytesIO(head + raw_length + text)
        npf.read_magic(buf)
        read = npf.read_array_header_1_0 if version == (1, 0) else npf.read_array_header_2_0
        shape, _, dtype = read(buf)
    except (ValueError, OSError, SyntaxError, TypeError):
        # numpy's messages quote the header; never echo a file's contents
        raise WeightsError(f"{what}: not a valid .npy array (its header does not parse)") from None
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.kind not in "biufc":
        raise WeightsError(f"{what}: dtype {dtype} holds Python objects or records; featcli loads numbers")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise WeightsError(f"{what}: {list(shape)} {dtype} is {nbytes:,} bytes, above the "
                           f"{MAX_TENSOR_BYTES >> 20} MiB featcli loads")
    if nbytes > available - fh.tell():
        raise WeightsError(f"{what}: truncated: header says {list(shape)} {dtype} ({nbytes:,} bytes) "
                           f"but the file holds {max(available - fh.tell(), 0):,}")
    return tuple(int(s) for s in shape), dtype, nbytes


def read_npy(path: str | Path) -> np.ndarray[Any, Any]:
    """Load a ``.npy`` file safely: header checked first, ``allow_pickle=False``.

    Integer arrays are returned as they are (a hand-written kernel is often integer); the caller decides.
    """
    import numpy as np

    p = Path(path)
    what = str(p)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            _npy_header(fh, size, what=what)
        arr: np.ndarray[Any, Any] = np.load(p, allow_pickle=False)
        return arr
    except WeightsError:
        raise
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{what}: cannot read .npy: {exc}") from None


def _npz_entries(p: Path) -> dict[str, Entry]:
    import zipfile

    import numpy as np

    entries: dict[str, Entry] = {}
    with zipfile.ZipFile(p) as zf:
        member_cap = MAX_TENSOR_BYTES + 12 + MAX_NPY_HEADER
        check_members(p, zf, limit=member_cap, stored_limit=member_cap)
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            with zf.open(info) as fh:
                shape, dtype, _ = _npy_header(fh, info.file_size, what=f"{p}:{name}")

            def load(name: str = name) -> torch.Tensor:
                with np.load(p, allow_pickle=False) as npz:
                    return _from_numpy(npz[name])

            entries[name] = Entry(shape, str(dtype), load)
    return entries


def _from_numpy(arr: np.ndarray[Any, Any]) -> torch.Tensor:
    import numpy as np
    import torch

    if arr.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("="))))


def _torch_reason(exc: BaseException) -> str:
    """torch's own message, minus any advice to load unsafely (featcli never repeats it)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return type(exc).__name__ if re.search("weights.only", first, re.I) else first[:200]


#: Pickle opcodes that import or build objects: GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ(_EX), STACK_GLOBAL.
_OBJECT_OPCODES = frozenset(b"cRbio") | {0x81, 0x92, 0x93}


def _looks_pickled(p: Path) -> bool:
    """True when a file starts as torch's legacy format does: a pickle protocol 2+ header (0x80 N)."""
    try:
        with p.open("rb") as fh:
            head = fh.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _check_torch_sizes(p: Path, fmt: str) -> None:
    """Refuse before unpickling: a zip checkpoint's compressed members as :func:`check_members` does, and a
    pickle above :data:`MAX_PICKLE_BYTES` (``data.pkl``) or :data:`MAX_LEGACY_BYTES` (a legacy file, read whole).
    Uncompressed tensor members are memory-mapped: nothing is read until a tensor is loaded, and that tensor's
    size is checked from its shape first."""
    import zipfile

    if fmt != "torch":
        size = p.stat().st_size
        if size > MAX_LEGACY_BYTES:
            raise WeightsError(f"{p}: a legacy (pickle) checkpoint of {size:,} bytes is read whole; featcli "
                               f"reads up to {MAX_LEGACY_BYTES >> 20} MiB (save it with torch.save or as .safetensors)")
        return
    with zipfile.ZipFile(p) as zf:
        check_members(p, zf, limit=MAX_TENSOR_BYTES)
        for info in zf.infolist():
            if (info.filename == "data.pkl" or info.filename.endswith("/data.pkl")) \
                    and info.file_size > MAX_PICKLE_BYTES:
                raise WeightsError(f"{p}: its data.pkl declares {info.file_size:,} bytes, above the "
                                   f"{MAX_PICKLE_BYTES >> 20} MiB featcli unpickles")


def _torch_load(p: Path, fmt: str) -> Any:
    import pickle

    import torch

    _check_torch_sizes(p, fmt)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True, mmap=fmt == "torch")
    except pickle.UnpicklingError as exc:
        text = str(exc)
        glob = re.search(r"GLOBAL ([\w.]+)", text)
        op = re.search(r"Unsupported operand (\d+)", text)
        if glob or (op and int(op.group(1)) in _OBJECT_OPCODES):
            found = f" (it refers to {glob.group(1)})" if glob else ""
            raise WeightsError(
                f"{p}: the file contains code or objects featcli will not load{found}; featcli loads "
                "only tensors, numbers, strings and plain containers (save a state_dict, or .safetensors)"
            ) from None
        what = f"unsupported pickle opcode {op.group(1)}" if op else _torch_reason(exc)
        raise WeightsError(f"{p}: not a PyTorch checkpoint featcli can read safely ({what})") from None
    except Exception as exc:  # noqa: BLE001 - torch raises KeyError, RuntimeError, EOFError... on junk
        if "legacy .tar format" in str(exc):
            raise WeightsError(f"{p}: a pre-1.6 .tar-format checkpoint cannot be loaded safely") from None
        if fmt == "torch-legacy" and p.stat().st_size == 0:
            raise WeightsError(f"{p}: the file is empty") from None
        if fmt == "torch-legacy" and not _looks_pickled(p):
            raise WeightsError(f"{p}: not a PyTorch checkpoint (neither a zip archive nor a pickle stream)") \
                from None
        raise WeightsError(f"{p}: not a readable PyTorch checkpoint ({_torch_reason(exc)})") from None


def detect_format(p: Path) -> str:
    """``npy``, ``npz``, ``torchscript``, ``torch`` (zip), ``safetensors`` or ``torch-legacy``, by content."""
    import zipfile

    with p.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise WeightsError(f"{p}: damaged zip archive ({exc})") from None
        if any(n == "constants.pkl" or n.endswith("/constants.pkl") for n in names):
            return "torchscript"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise WeightsError(f"{p}: a zip archive that is neither a PyTorch checkpoint nor an .npz file")
    if len(head) >= 9 and head[8:9] == b"{" or p.suffix.lower() == ".safetensors":
        return "safetensors"
    return "torch-legacy"


def _flatten(obj: Any, prefix: str, out: dict[str, Any], depth: int = 0) -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif depth < 12 and isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out, depth + 1)
    elif depth < 12 and isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _flatten(v, f"{prefix}.{i}" if prefix else str(i), out, depth + 1)


def _unwrap(obj: Any) -> Any:
    import torch

    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[w] for w in WRAPPERS if isinstance(obj.get(w), Mapping)), None)
        if inner is None:
            break
        obj = inner
    return obj


def strip_prefixes(key: str) -> str:
    """``key`` without the ``module.`` / ``_orig_mod.`` prefixes DataParallel and torch.compile add.

    >>> strip_prefixes("module._orig_mod.conv1.weight")
    'conv1.weight'
    """
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if key.startswith(pre):
                key, changed = key[len(pre) :], True
    return key


def load_entries(path: str | Path, *, allow_torchscript: bool = False) -> tuple[str, dict[str, Entry]]:
    """Every tensor of a weight file as ``(format, {key: entry})``; nothing of the file's code runs."""
    import torch

    p = Path(path)
    if not is_file(p):
        raise WeightsError("weights file not found (or not a file)", path=str(p)[:300])
    fmt = detect_format(p)
    if fmt == "npy":
        arr_load: Callable[[], Any] = lambda: _from_numpy(read_npy(p))  # noqa: E731
        with p.open("rb") as fh:
            shape, dtype, _ = _npy_header(fh, p.stat().st_size, what=str(p))
        return fmt, {"": Entry(shape, str(dtype), arr_load)}
    if fmt == "npz":
        return fmt, _npz_entries(p)
    if fmt == "safetensors":
        return fmt, _safetensors_entries(p)
    if fmt == "torchscript":
        if not allow_torchscript:
            raise WeightsError(
                f"{p}: is a TorchScript archive, which is code; load it only if you trust its source, "
                "with --trust-torchscript"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj: Any = torch.jit.load(str(p), map_location="cpu").state_dict()  # type: ignore[no-untyped-call]
        except Exception as exc:  # noqa: BLE001
            raise WeightsError(f"{p}: cannot load TorchScript archive ({_torch_reason(exc)})") from None
    else:
        obj = _torch_load(p, fmt)
    flat: dict[str, Any] = {}
    _flatten(_unwrap(obj), "", flat)
    entries: dict[str, Entry] = {}
    for key, t in flat.items():
        short = strip_prefixes(key)
        name = short if short not in flat and short not in entries else key
        entries[name] = Entry(tuple(t.shape), str(t.dtype).removeprefix("torch."), _constant(t))
    return fmt, entries


def _constant(t: Any) -> Callable[[], Any]:
    return lambda: t


def _safetensors_bad(p: Path, reason: str) -> WeightsError:
    return WeightsError(f"{p}: not a valid .safetensors file ({reason})")


def _safetensors_entries(p: Path) -> dict[str, Entry]:
    """Every tensor a ``.safetensors`` file declares, its header checked first (:mod:`featcli.io.safeheader`:
    the declared byte ranges tile the data the file holds); a tensor is read by the safetensors package."""
    from featcli.io.safeheader import read_header, tensor_entries

    header, _, data_size = read_header(p, _safetensors_bad)
    meta = header.get("__metadata__")
    if meta is not None and not (isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())):
        raise _safetensors_bad(p, "__metadata__ is not a mapping of strings to strings")
    declared = tensor_entries(p, header, data_size, _safetensors_bad)

    def loader(key: str) -> Callable[[], Any]:
        def load() -> Any:
            from safetensors import safe_open

            try:
                with safe_open(str(p), framework="pt", device="cpu") as g:
                    return g.get_tensor(key)
            except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError
                # its messages quote the file's header values: name the tensor, not what the file says
                raise _safetensors_bad(p, f"the safetensors reader refused tensor {key!r} "
                                          f"({type(exc).__name__})") from None

        return load

    return {k: Entry(e.shape, e.dtype, loader(k)) for k, e in declared.items()}
