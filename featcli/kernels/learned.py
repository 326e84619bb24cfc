"""Learned conv weights from checkpoint files, loaded without running any code from them.

A reference is ``FILE:KEY`` (``model.pt:conv1.weight``), ``FILE:GLOB`` (``model.pt:*conv1*.weight``, which
must match one key) or ``FILE`` alone when the file holds exactly one conv weight (or one tensor).

Formats, detected from the content, not the name:

- PyTorch zip and legacy checkpoints: ``torch.load(path, map_location="cpu", weights_only=True)``, always;
  a file that needs anything beyond tensors and plain containers is refused, never retried unsafely.
- ``.npy`` / ``.npz``: ``allow_pickle=False``; each array's header (dtype, shape) is checked against the
  file size and :data:`MAX_TENSOR_BYTES` before anything is allocated.
- ``.safetensors``: via the ``safetensors`` package (a format without code).
- TorchScript archives only with ``allow_torchscript=True`` (CLI ``--trust-torchscript``): they are code.

Checkpoints nested as ``{"state_dict": ...}``, ``{"model": ...}`` (and a few other wrapper names) are
unwrapped, and ``module.`` / ``_orig_mod.`` prefixes (DataParallel, torch.compile) are dropped from keys; a
key typed with them still matches. When ``KEY`` ends in ``.weight`` and ``KEY`` minus ``weight`` plus
``bias`` holds a 1-D tensor of matching length, it is returned as the bias of a 4-D conv weight.

torch and numpy are imported inside the functions that need them.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.errors import WeightsError

if TYPE_CHECKING:
    import numpy as np
    import torch

#: File name endings treated as weight files in a ``FILE:KEY`` reference.
WEIGHT_SUFFIXES = frozenset(
    {".pt", ".pth", ".bin", ".ckpt", ".tar", ".safetensors", ".npy", ".npz", ".ts", ".jit", ".ptl"}
)
#: Largest single tensor loaded (checked from headers before allocating where the format allows).
MAX_TENSOR_BYTES = 1 << 30
#: Largest kernel side of a learned weight (as for library kernels).
MAX_SIDE = 255
_WRAPPERS = ("state_dict", "model_state_dict", "model", "net", "network", "params", "ema", "model_ema")
_PREFIXES = ("module.", "_orig_mod.")


@dataclass(frozen=True)
class _Entry:
    shape: tuple[int, ...]
    dtype: str
    load: Callable[[], Any]  # -> torch.Tensor


@dataclass(frozen=True, eq=False)
class LearnedWeight:
    """A validated tensor from a checkpoint: float32, finite, 2-D ``(kh, kw)``, 3-D ``(n, kh, kw)`` or 4-D.

    A 4-D weight ``(out, in, kh, kw)`` is a whole conv layer; ``bias`` is its ``(out,)`` bias when the
    checkpoint has one beside it.
    """

    ref: str
    path: str
    key: str  #: the key in the checkpoint, ``""`` for a file holding a single tensor
    weight: torch.Tensor
    bias: torch.Tensor | None
    bias_key: str | None
    source_dtype: str  #: the dtype in the file, e.g. ``"torch.float16"`` or ``"float64"``
    format: str  #: ``torch``, ``torch-legacy``, ``torchscript``, ``safetensors``, ``npy`` or ``npz``

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.weight.shape)

    @property
    def label(self) -> str:
        """Short name for feature-map captions: the key without ``.weight``, or the file stem."""
        if not self.key:
            return Path(self.path).stem
        return self.key[: -len(".weight")] if self.key.endswith(".weight") else self.key


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checkpoint as ``featcli kernels inspect`` lists it."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    min: float | None
    max: float | None
    usable: bool  #: a valid 4-D conv weight (or the only tensor of the file, 2-D to 4-D)
    note: str  #: what it would be used as, or why it cannot be

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "shape": list(self.shape), "dtype": self.dtype, "min": self.min,
                "max": self.max, "usable": self.usable, "note": self.note}


# --- references ------------------------------------------------------------------------------------
def is_file(path: str | Path) -> bool:
    """``Path.is_file`` that says False for names the OS refuses (too long, NUL bytes)."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def split_ref(ref: str) -> tuple[str, str | None]:
    """Split ``FILE[:KEY]``; the file part is the longest prefix that exists (so ``C:\\m.pt:k`` works)."""
    if is_file(ref):
        return ref, None
    for i in range(len(ref) - 1, 0, -1):
        if ref[i] == ":" and is_file(ref[:i]):
            return ref[:i], ref[i + 1 :]
    for i in range(len(ref) - 1, 0, -1):
        if ref[i] == ":" and Path(ref[:i]).suffix.lower() in WEIGHT_SUFFIXES:
            return ref[:i], ref[i + 1 :]
    return ref, None


def is_weights_ref(ref: str) -> bool:
    """True when ``ref`` names a weight file (by its ending), with or without ``:KEY``."""
    path, _ = split_ref(ref)
    return Path(path).suffix.lower() in WEIGHT_SUFFIXES


# --- validation ------------------------------------------------------------------------------------
def weight_problem(shape: tuple[int, ...], dtype: str) -> str | None:
    """Why a tensor of this shape and dtype cannot be a conv weight, or None. Cheap: no data needed."""
    d = dtype.removeprefix("torch.")
    if "complex" in d:
        return f"complex dtype {d}; conv weights are real"
    if d == "bool":
        return "bool dtype; conv weights are floating point"
    if d.startswith(("int", "uint", "qint", "quint")):
        return f"integer dtype {d}; conv weights are floating point (a counter or index buffer?)"
    if not d.startswith(("float", "bfloat")):
        return f"dtype {d} is not a floating-point type"
    if len(shape) < 2:
        return f"{len(shape)}-D tensor {list(shape)} (a bias or a scalar), not a conv weight"
    if len(shape) > 4:
        return f"{len(shape)}-D tensor {list(shape)}; only 2-D conv weights (out, in, kh, kw) are supported"
    if math.prod(shape) == 0:
        return f"empty tensor of shape {list(shape)}"
    if shape[-1] > MAX_SIDE or shape[-2] > MAX_SIDE:
        return f"kernel {shape[-2]}x{shape[-1]} is larger than {MAX_SIDE}x{MAX_SIDE} (not a conv weight?)"
    if len(shape) == 3 and shape[1] != shape[2]:
        return (f"3-D tensor {list(shape)} is ambiguous: not a stack of square (n, k, k) kernels "
                "(a Conv1d weight?)")
    if math.prod(shape) * 4 > MAX_TENSOR_BYTES:
        return f"{math.prod(shape):,} values is more than featcli loads ({MAX_TENSOR_BYTES >> 20} MiB)"
    return None


def check_weight(t: torch.Tensor, *, what: str) -> torch.Tensor:
    """Validate ``t`` as a conv weight and return it as a contiguous float32 CPU tensor.

    Raises:
        WeightsError: see :func:`weight_problem`; also NaN/Inf values, sparse and quantized tensors.
    """
    import torch

    if t.layout != torch.strided or t.is_quantized:
        raise WeightsError(f"{what}: sparse or quantized tensors are not supported")
    problem = weight_problem(tuple(t.shape), str(t.dtype))
    if problem:
        raise WeightsError(f"{what}: {problem}")
    out = t.detach().to(device="cpu", dtype=torch.float32).contiguous()
    if not bool(torch.isfinite(out).all()):
        n_nan, n_inf = int(torch.isnan(out).sum()), int(torch.isinf(out).sum())
        raise WeightsError(f"{what}: holds {n_nan} NaN and {n_inf} Inf values; weights must be finite")
    return out


# --- safe readers ----------------------------------------------------------------------------------
def _npy_header(fh: Any, available: int, *, what: str) -> tuple[tuple[int, ...], np.dtype[Any], int]:
    """Read a ``.npy`` header; check dtype and that the declared data fits ``available`` bytes."""
    import numpy as np
    from numpy.lib import format as npf

    try:
        version = npf.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = npf.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = npf.read_array_header_2_0(fh)
        else:
            raise WeightsError(f"{what}: unsupported .npy format version {version}")
    except (ValueError, OSError, SyntaxError) as exc:
        raise WeightsError(f"{what}: not a valid .npy array ({exc})") from None
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


def _npz_entries(p: Path) -> dict[str, _Entry]:
    import zipfile

    import numpy as np

    entries: dict[str, _Entry] = {}
    with zipfile.ZipFile(p) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            with zf.open(info) as fh:
                shape, dtype, _ = _npy_header(fh, info.file_size, what=f"{p}:{name}")

            def load(name: str = name) -> torch.Tensor:
                with np.load(p, allow_pickle=False) as npz:
                    return _from_numpy(npz[name])

            entries[name] = _Entry(shape, str(dtype), load)
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


def _torch_load(p: Path, fmt: str) -> Any:
    import pickle

    import torch

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
        inner = next((obj[w] for w in _WRAPPERS if isinstance(obj.get(w), Mapping)), None)
        if inner is None:
            break
        obj = inner
    return obj


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if key.startswith(pre):
                key, changed = key[len(pre) :], True
    return key


def load_entries(path: str | Path, *, allow_torchscript: bool = False) -> tuple[str, dict[str, _Entry]]:
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
        return fmt, {"": _Entry(shape, str(dtype), arr_load)}
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
    entries: dict[str, _Entry] = {}
    for key, t in flat.items():
        short = _strip(key)
        name = short if short not in flat and short not in entries else key
        entries[name] = _Entry(tuple(t.shape), str(t.dtype).removeprefix("torch."), _constant(t))
    return fmt, entries


def _constant(t: Any) -> Callable[[], Any]:
    return lambda: t


def _safetensors_entries(p: Path) -> dict[str, _Entry]:
    try:
        from safetensors import safe_open

        entries: dict[str, _Entry] = {}
        with safe_open(str(p), framework="pt", device="cpu") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a Mapping
                sl = f.get_slice(key)
                dtype = str(sl.get_dtype())

                def load(key: str = key) -> Any:
                    with safe_open(str(p), framework="pt", device="cpu") as g:
                        return g.get_tensor(key)

                entries[key] = _Entry(tuple(int(s) for s in sl.get_shape()), _st_dtype(dtype), load)
        return entries
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError
        raise WeightsError(f"{p}: not a valid .safetensors file ({str(exc).splitlines()[0][:200]})") from None


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "BOOL": "bool",
              "C64": "complex64", "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64",
              "U8": "uint8", "U16": "uint16", "U32": "uint32", "U64": "uint64"}


def _st_dtype(code: str) -> str:
    return _ST_DTYPES.get(code.upper(), code.lower())


# --- public entry points -----------------------------------------------------------------------------
def _describe(key: str, e: _Entry) -> str:
    return f"{key or '(the tensor)'} ({'x'.join(map(str, e.shape))})"


def _select(path: str, key: str | None, entries: dict[str, _Entry]) -> str:
    convs = [k for k, e in entries.items() if len(e.shape) == 4 and weight_problem(e.shape, e.dtype) is None]
    listing = ", ".join(_describe(k, entries[k]) for k in convs[:12]) + (" ..." if len(convs) > 12 else "")
    if key is None or key == "":
        if len(entries) == 1:
            return next(iter(entries))
        if len(convs) == 1:
            return convs[0]
        if not convs:
            raise WeightsError(f"{path}: holds no 4-D conv weight; its tensors: "
                               + ", ".join(_describe(k, e) for k, e in list(entries.items())[:12]))
        raise WeightsError(f"{path}: holds {len(convs)} conv weights; pick one with FILE:KEY: {listing}")
    if any(c in key for c in "*?["):
        matches = [k for k in entries if fnmatch.fnmatchcase(k, key) or fnmatch.fnmatchcase(k, _strip(key))]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise WeightsError(f"{path}: no key matches {key!r}; conv weights: {listing or 'none'}")
        raise WeightsError(f"{path}: {len(matches)} keys match {key!r}, pick one: "
                           + ", ".join(_describe(k, entries[k]) for k in matches[:20]))
    unwrapped = [_strip(key[len(w) + 1 :]) for w in _WRAPPERS if key.startswith(w + ".")]
    for cand in (key, _strip(key), *unwrapped):
        if cand in entries:
            return cand
    close = difflib.get_close_matches(key, list(entries), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise WeightsError(f"{path}: no tensor {key!r}{hint}; conv weights: {listing or 'none'}")


def load_weight(ref: str, *, allow_torchscript: bool = False) -> LearnedWeight:
    """Load and validate the conv weight named by ``ref`` (``FILE``, ``FILE:KEY`` or ``FILE:GLOB``).

    Raises:
        WeightsError: missing file or key, ambiguous glob, unsafe or unreadable file, unusable tensor.
    """
    path, key = split_ref(ref)
    fmt, entries = load_entries(path, allow_torchscript=allow_torchscript)
    if fmt == "npy" and key:
        raise WeightsError(f"{path}: an .npy file holds one array; drop ':{key}'")
    name = _select(path, key, entries)
    entry = entries[name]
    what = f"{path}:{name}" if name else path
    problem = weight_problem(entry.shape, entry.dtype)
    if problem:
        raise WeightsError(f"{what}: {problem}")
    weight = check_weight(entry.load(), what=what)
    bias, bias_key = None, None
    if weight.ndim == 4 and name.endswith(".weight"):
        bkey = name[: -len("weight")] + "bias"
        b = entries.get(bkey)
        if b is not None and b.shape == (weight.shape[0],) and weight_problem((1, *b.shape), b.dtype) is None:
            bias, bias_key = _check_bias(b.load(), what=f"{path}:{bkey}"), bkey
    return LearnedWeight(ref=ref, path=path, key=name, weight=weight, bias=bias, bias_key=bias_key,
                         source_dtype=entry.dtype, format=fmt)


def _check_bias(t: torch.Tensor, *, what: str) -> torch.Tensor:
    import torch

    out = t.detach().to(device="cpu", dtype=torch.float32).contiguous()
    if not bool(torch.isfinite(out).all()):
        raise WeightsError(f"{what}: bias holds NaN or Inf values")
    return out


def inspect_file(path: str | Path, *, allow_torchscript: bool = False, include_all: bool = False
                 ) -> list[TensorInfo]:
    """Describe the tensors of a weight file usable as conv weights (``include_all``: every tensor)."""
    import torch

    _, entries = load_entries(path, allow_torchscript=allow_torchscript)
    single = len(entries) == 1
    infos: list[TensorInfo] = []
    for key, e in entries.items():
        problem = weight_problem(e.shape, e.dtype)
        if problem is None and len(e.shape) != 4 and not single:
            problem = f"{len(e.shape)}-D tensor in a checkpoint (use it explicitly with FILE:KEY)"
        if problem is not None and not include_all:
            continue
        lo = hi = None
        numeric = e.dtype.startswith(("float", "bfloat", "int", "uint"))
        if numeric and 0 < math.prod(e.shape) and math.prod(e.shape) * 4 <= MAX_TENSOR_BYTES:
            t = e.load().detach()
            if t.layout == torch.strided and not t.is_quantized:
                t = t.to(torch.float64)
                lo, hi = float(t.min()), float(t.max())
                if not (math.isfinite(lo) and math.isfinite(hi)) or bool(torch.isnan(t).any()):
                    problem = problem or "holds NaN or Inf values"
                    lo = hi = None
        note = problem or _usage(e.shape)
        infos.append(TensorInfo(key, e.shape, e.dtype, lo, hi, problem is None, note))
    return infos


def _usage(shape: tuple[int, ...]) -> str:
    if len(shape) == 4:
        return f"conv layer: {shape[1]} -> {shape[0]} channels, {shape[2]}x{shape[3]}"
    if len(shape) == 3:
        return f"{shape[0]} kernels {shape[1]}x{shape[2]}"
    return f"one kernel {shape[0]}x{shape[1]}"
