"""Learned weights: pick one tensor of a checkpoint by reference and validate it as a conv weight or slopes.

A reference is ``FILE:KEY`` (``model.pt:conv1.weight``), ``FILE:GLOB`` (``model.pt:*conv1*.weight``, which
must match one key) or ``FILE`` alone when the file holds exactly one conv weight (or one tensor). The file
is read by :mod:`featcli.io.checkpoints`, which never runs code from it; a key typed with a wrapper
(``state_dict.``) or a ``module.`` / ``_orig_mod.`` prefix still matches. When ``KEY`` ends in ``.weight``
and ``KEY`` minus ``weight`` plus ``bias`` holds a 1-D tensor of matching length, it is returned as the
bias of a 4-D conv weight.

:func:`load_weight` gives a conv weight (2-D kernel, 3-D stack of kernels or 4-D layer);
:func:`load_vector` and :func:`vector_length` a 1-D tensor such as PReLU slopes (``prelu1.weight``), read
once and kept until the file changes (:mod:`featcli.kernels.cache`); :func:`inspect_file` lists what a
file holds. torch is imported inside the functions that need it.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.errors import WeightsError
from featcli.io import checkpoints
from featcli.io.checkpoints import MAX_TENSOR_BYTES, WRAPPERS, Entry, is_file, strip_prefixes
from featcli.kernels import cache

if TYPE_CHECKING:
    import torch

#: File name endings treated as weight files in a ``FILE:KEY`` reference.
WEIGHT_SUFFIXES = frozenset(
    {".pt", ".pth", ".bin", ".ckpt", ".tar", ".safetensors", ".npy", ".npz", ".ts", ".jit", ".ptl"}
)
#: Largest kernel side of a learned weight (as for library kernels).
MAX_SIDE = 255


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
def _dtype_problem(dtype: str, what: str) -> str | None:
    d = dtype.removeprefix("torch.")
    if "complex" in d:
        return f"complex dtype {d}; {what} are real"
    if d == "bool":
        return f"bool dtype; {what} are floating point"
    if d.startswith(("int", "uint", "qint", "quint")):
        return f"integer dtype {d}; {what} are floating point (a counter or index buffer?)"
    if not d.startswith(("float", "bfloat")):
        return f"dtype {d} is not a floating-point type"
    return None


def weight_problem(shape: tuple[int, ...], dtype: str) -> str | None:
    """Why a tensor of this shape and dtype cannot be a conv weight, or None. Cheap: no data needed."""
    problem = _dtype_problem(dtype, "conv weights")
    if problem:
        return problem
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
    return _size_problem(shape)


def vector_problem(shape: tuple[int, ...], dtype: str) -> str | None:
    """Why a tensor cannot be a vector of per-channel values (PReLU slopes), or None. No data needed.

    >>> vector_problem((10, 3), "float32")
    '2-D tensor [10, 3]; expected a 1-D tensor of per-channel values (such as PReLU slopes)'
    """
    problem = _dtype_problem(dtype, "weights")
    if problem:
        return problem
    if len(shape) != 1:
        return (f"{len(shape)}-D tensor {list(shape)}; expected a 1-D tensor of per-channel values "
                "(such as PReLU slopes)")
    if shape[0] == 0:
        return f"empty tensor of shape {list(shape)}"
    return _size_problem(shape)


def _size_problem(shape: tuple[int, ...]) -> str | None:
    if math.prod(shape) * 4 > MAX_TENSOR_BYTES:
        return f"{math.prod(shape):,} values is more than featcli loads ({MAX_TENSOR_BYTES >> 20} MiB)"
    return None


def check_weight(t: torch.Tensor, *, what: str) -> torch.Tensor:
    """Validate ``t`` as a conv weight and return it as a contiguous float32 CPU tensor.

    Raises:
        WeightsError: see :func:`weight_problem`; also NaN/Inf values, sparse and quantized tensors.
    """
    return _checked(t, weight_problem, what=what)


def _checked(t: torch.Tensor, problem_of: Callable[[tuple[int, ...], str], str | None], *, what: str
             ) -> torch.Tensor:
    import torch

    if t.layout != torch.strided or t.is_quantized:
        raise WeightsError(f"{what}: sparse or quantized tensors are not supported")
    problem = problem_of(tuple(t.shape), str(t.dtype))
    if problem:
        raise WeightsError(f"{what}: {problem}")
    # A copy, always: a tensor memory-mapped from the file must not outlive it (weights are cached).
    out = t.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous()
    if not bool(torch.isfinite(out).all()):
        n_nan, n_inf = int(torch.isnan(out).sum()), int(torch.isinf(out).sum())
        raise WeightsError(f"{what}: holds {n_nan} NaN and {n_inf} Inf values; weights must be finite")
    return out


# --- picking a tensor -------------------------------------------------------------------------------
def _describe(key: str, e: Entry) -> str:
    return f"{key or '(the tensor)'} ({'x'.join(map(str, e.shape))})"


def _select(path: str, key: str | None, entries: dict[str, Entry], *, vector: bool = False) -> str:
    """The key ``key`` names in ``entries`` (exact, without wrappers or prefixes, or a glob matching one)."""
    if vector:
        fits = [k for k, e in entries.items() if vector_problem(e.shape, e.dtype) is None]
        noun = "1-D tensors"
    else:
        fits = [k for k, e in entries.items() if len(e.shape) == 4 and weight_problem(e.shape, e.dtype) is None]
        noun = "conv weights"
    listing = ", ".join(_describe(k, entries[k]) for k in fits[:12]) + (" ..." if len(fits) > 12 else "")
    if key is None or key == "":
        if len(entries) == 1:
            return next(iter(entries))
        if vector:
            raise WeightsError(f"{path}: holds {len(entries)} tensors; pick one with FILE:KEY; "
                               f"{noun}: {listing or 'none'}")
        if len(fits) == 1:
            return fits[0]
        if not fits:
            raise WeightsError(f"{path}: holds no 4-D conv weight; its tensors: "
                               + ", ".join(_describe(k, e) for k, e in list(entries.items())[:12]))
        raise WeightsError(f"{path}: holds {len(fits)} conv weights; pick one with FILE:KEY: {listing}")
    if any(c in key for c in "*?["):
        stripped = strip_prefixes(key)
        matches = [k for k in entries if fnmatch.fnmatchcase(k, key) or fnmatch.fnmatchcase(k, stripped)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise WeightsError(f"{path}: no key matches {key!r}; {noun}: {listing or 'none'}")
        raise WeightsError(f"{path}: {len(matches)} keys match {key!r}, pick one: "
                           + ", ".join(_describe(k, entries[k]) for k in matches[:20]))
    unwrapped = [strip_prefixes(key[len(w) + 1 :]) for w in WRAPPERS if key.startswith(w + ".")]
    for cand in (key, strip_prefixes(key), *unwrapped):
        if cand in entries:
            return cand
    close = difflib.get_close_matches(key, list(entries), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise WeightsError(f"{path}: no tensor {key!r}{hint}; {noun}: {listing or 'none'}")


def _entries(ref: str, allow_torchscript: bool) -> tuple[str, str | None, str, dict[str, Entry]]:
    """``(path, key, format, entries)`` of the file ``ref`` names."""
    path, key = split_ref(ref)
    cache.depends_on("file", path)
    fmt, entries = checkpoints.load_entries(path, allow_torchscript=allow_torchscript)
    if fmt == "npy" and key:
        raise WeightsError(f"{path}: an .npy file holds one array; drop ':{key}'")
    return path, key, fmt, entries


def load_weight(ref: str, *, allow_torchscript: bool = False) -> LearnedWeight:
    """Load and validate the conv weight named by ``ref`` (``FILE``, ``FILE:KEY`` or ``FILE:GLOB``).

    Raises:
        WeightsError: missing file or key, ambiguous glob, unsafe or unreadable file, unusable tensor.
    """
    path, key, fmt, entries = _entries(ref, allow_torchscript)
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

    out = t.detach().to(device="cpu", dtype=torch.float32, copy=True).contiguous()
    if not bool(torch.isfinite(out).all()):
        raise WeightsError(f"{what}: bias holds NaN or Inf values")
    return out


def load_vector(ref: str, *, allow_torchscript: bool = False) -> torch.Tensor:
    """The 1-D tensor ``ref`` names (``FILE:KEY``, e.g. ``facenet.pt:prelu1.weight``) as float32 ``(n,)``.

    Read once and kept until the file changes (:mod:`featcli.kernels.cache`); each call returns its own copy.

    Raises:
        WeightsError: missing file or key, unsafe or unreadable file, a tensor that is not 1-D (the message
            names the reference and the shape), not floating point, or not finite.
    """
    return _cached_vector(ref, allow_torchscript).clone()


def vector_length(ref: str, *, allow_torchscript: bool = False) -> int:
    """The length ``n`` of the 1-D tensor ``ref`` names (how many PReLU slopes). Refusals as :func:`load_vector`."""
    return int(_cached_vector(ref, allow_torchscript).shape[0])


def _cached_vector(ref: str, allow_torchscript: bool) -> torch.Tensor:
    return cache.cached(("vector", ref, allow_torchscript, os.getcwd()), lambda: _read_vector(ref, allow_torchscript))


def _read_vector(ref: str, allow_torchscript: bool) -> torch.Tensor:
    path, key, _, entries = _entries(ref, allow_torchscript)
    name = _select(path, key, entries, vector=True)
    entry = entries[name]
    what = f"{path}:{name}" if name else path
    problem = vector_problem(entry.shape, entry.dtype)
    if problem:
        raise WeightsError(f"{what}: {problem}")
    return _checked(entry.load(), vector_problem, what=what)


def inspect_file(path: str | Path, *, allow_torchscript: bool = False, include_all: bool = False
                 ) -> list[TensorInfo]:
    """Describe the tensors of a weight file usable as conv weights (``include_all``: every tensor)."""
    import torch

    _, entries = checkpoints.load_entries(path, allow_torchscript=allow_torchscript)
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
