"""The kernel library: named kernels from ``kernels/*.toml``, parametric families, user kernels.

Weights follow the cross-correlation convention of ``torch.nn.functional.conv2d`` and ``cv2.filter2D``:
row 0 is the top row and nothing is flipped, so ``sobel_x`` (``[[-1,0,1],[-2,0,2],[-1,0,1]]``) is positive
on a dark-to-bright step from left to right.

A kernel reference (what ``-k`` and ``conv:w=`` take) is one of:

- a library name: ``sobel_x`` (built-in, or from a user folder: ``kernels_dir`` / ``FEATCLI_KERNELS_DIR``);
- a family or library name with parameters, in either form: ``gaussian:size=7,sigma=1.5`` or
  ``gaussian(size=7,sigma=1.5)``; every kernel also takes ``angle=`` (multiples of 45, clockwise) and
  ``norm=`` (``sum``, ``signed``, ``auto``/``1``, ``none``/``0``);
- an inline matrix: ``[[1,0,-1],[2,0,-2],[1,0,-1]]`` or ``1 0 -1; 2 0 -2; 1 0 -1``;
- a file: a whitespace/comma text matrix, ``.npy`` (2-D, or 3-D for several kernels), a ``.toml`` in the
  library's format (``FILE.toml:NAME`` picks one of several);
- learned weights ``FILE:KEY`` (see :mod:`featcli.kernels.learned`).

Only the standard library is imported at module level; numpy (``.npy``) and torch (learned weights,
:func:`conv_weight`) are imported when needed, so shape queries stay instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.enums import KernelMode
from featcli.errors import KernelError, ShapeError
from featcli.kernels import families as kf
from featcli.kernels import learned as _weights
from featcli.resources import kernels_dir as builtin_kernels_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

if TYPE_CHECKING:
    import torch

    from featcli.kernels.learned import LearnedWeight

Matrix = kf.Matrix
ENV_VAR = "FEATCLI_KERNELS_DIR"
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_SPEC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\)|:(.*))\Z", re.S)
_NUMERIC = re.compile(r"[-+0-9]|\.[0-9]|;")  # how an inline "rows; with; semicolons" matrix starts
_MAX_TEXT_BYTES = 1 << 20
_TOML_KEYS = {"name", "weights", "description", "tags", "source", "normalisation"}


@dataclass(frozen=True)
class Kernel:
    """A 2-D kernel: ``weights[i][j]`` multiplies the pixel at row offset ``i``, column ``j`` (no flip).

    >>> k = Kernel("d", ((-1.0, 0.0, 1.0),))
    >>> k.shape, k.sum, k.is_zero_sum
    ((1, 3), 0.0, True)
    """

    name: str
    weights: Matrix
    description: str = ""
    tags: tuple[str, ...] = ()
    source: str = ""
    normalisation: str = "none"  #: what was applied when loading: none, sum or signed
    origin: str = "built-in"  #: ``built-in``, the file it came from, ``family`` or ``inline``

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", kf.as_matrix(self.weights, what=f"kernel {self.name!r}"))

    @property
    def shape(self) -> tuple[int, int]:
        """``(kh, kw)``."""
        return len(self.weights), len(self.weights[0])

    @property
    def sum(self) -> float:
        return kf.msum(self.weights)

    @property
    def min(self) -> float:
        return min(min(r) for r in self.weights)

    @property
    def max(self) -> float:
        return max(max(r) for r in self.weights)

    @property
    def is_zero_sum(self) -> bool:
        """Flat regions map to 0 (derivative kernels)."""
        return kf.is_zero_sum(self.weights)

    @property
    def factors(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(column, row)`` if the kernel is separable (rank 1), else None."""
        return kf.rank1_factors(self.weights)

    @property
    def is_separable(self) -> bool:
        return self.factors is not None

    def with_weights(self, weights: Matrix, **changes: Any) -> Kernel:
        """A copy with new weights (validated again) and any other fields changed."""
        return dataclasses.replace(self, weights=weights, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description (``featcli kernels show --json``)."""
        f = self.factors
        return {
            "name": self.name, "shape": list(self.shape), "weights": [list(r) for r in self.weights],
            "sum": self.sum, "min": self.min, "max": self.max, "zero_sum": self.is_zero_sum,
            "separable": f is not None,
            "factors": None if f is None else {"column": list(f[0]), "row": list(f[1])},
            "description": self.description, "tags": list(self.tags), "source": self.source,
            "normalisation": self.normalisation, "origin": self.origin,
        }


@dataclass(frozen=True, eq=False)
class ConvWeight:
    """Everything ``featcli run`` needs to build one conv stage.

    ``weight`` is ``(out, in / groups, kh, kw)``; ``labels`` names each output channel; ``gray`` says the
    input must be converted to luminance (one channel) first.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    groups: int
    labels: list[str]
    gray: bool
    kernels: tuple[Kernel, ...] = field(default=())  #: the 2-D kernels (empty for a learned 4-D layer)


# --- the library -----------------------------------------------------------------------------------
def _parse_toml(path: Path) -> list[Kernel]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelError(f"cannot read kernel file: {exc}", path=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise KernelError(f"invalid TOML: {exc}", path=str(path)) from None
    tables = data.get("kernel") if "kernel" in data else [data]
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise KernelError("expected [[kernel]] tables", path=str(path))
    if set(data) - {"kernel"} and "kernel" in data:
        raise KernelError(f"unexpected top-level keys {sorted(set(data) - {'kernel'})}", path=str(path))
    return [_kernel_from_table(t, path) for t in tables]


def _kernel_from_table(t: dict[str, Any], path: Path) -> Kernel:
    name = t.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise KernelError(f"kernel name {name!r} must match [a-z][a-z0-9_]*", path=str(path))
    extra = set(t) - _TOML_KEYS
    if extra:
        raise KernelError(f"kernel {name!r}: unknown keys {sorted(extra)}; known: {sorted(_TOML_KEYS)}",
                          path=str(path))
    if "weights" not in t:
        raise KernelError(f"kernel {name!r}: no weights", path=str(path))
    for key in ("description", "source"):
        if not isinstance(t.get(key, ""), str):
            raise KernelError(f"kernel {name!r}: {key} must be a string", path=str(path))
    tags = t.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
        raise KernelError(f"kernel {name!r}: tags must be a list of strings", path=str(path))
    norm = t.get("normalisation", "none")
    what = f"{path}: kernel {name!r}"
    if not isinstance(norm, str) or kf.parse_norm(norm, what=what) == "auto":
        raise KernelError(f"kernel {name!r}: normalisation must be none, sum or signed", path=str(path))
    weights = kf.normalise(kf.as_matrix(t["weights"], what=what), norm, what=what)
    return Kernel(name, weights, t.get("description", ""), tuple(tags), t.get("source", ""),
                  kf.parse_norm(norm, what=what), str(path))


def _dir_kernels(folder: Path, *, builtin: bool) -> list[Kernel]:
    if not folder.is_dir():
        raise KernelError("kernels folder does not exist", path=str(folder))
    found: list[Kernel] = []
    for p in sorted(folder.iterdir()):
        if p.suffix == ".toml":
            found.extend(_parse_toml(p))
        elif not builtin and p.suffix in (".txt", ".npy") and _NAME.match(p.stem):
            found.append(_file_kernel(p, name=p.stem))
    if builtin:
        found = [k.with_weights(k.weights, origin="built-in") for k in found]
    return found


@functools.cache
def _cached_dir(folder: str, stamp: tuple[tuple[str, int], ...], builtin: bool) -> tuple[Kernel, ...]:
    return tuple(_dir_kernels(Path(folder), builtin=builtin))


def _load_dir(folder: Path, *, builtin: bool) -> tuple[Kernel, ...]:
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())) if folder.is_dir() else ()
    return _cached_dir(str(folder.resolve()), stamp, builtin)


def user_dirs(kernels_dir: str | None = None) -> list[Path]:
    """User kernel folders: ``kernels_dir`` if given, else ``$FEATCLI_KERNELS_DIR`` (``os.pathsep``-list)."""
    raw = kernels_dir if kernels_dir is not None else os.environ.get(ENV_VAR, "")
    return [Path(d) for d in raw.split(os.pathsep) if d.strip()]


def library(kernels_dir: str | None = None) -> dict[str, Kernel]:
    """All named kernels, built-in then user ones, by name.

    Raises:
        KernelError: a bad library file, or a name defined twice (a user kernel may not shadow a
            built-in one or a family: ``sobel_x`` always means the same thing).
    """
    lib: dict[str, Kernel] = {}
    for folder, builtin in [(builtin_kernels_dir(), True), *((d, False) for d in user_dirs(kernels_dir))]:
        for k in _load_dir(folder, builtin=builtin):
            if k.name in lib or (not builtin and (k.name in kf.FAMILIES or k.name in kf.ROTATABLE)):
                first = lib[k.name].origin if k.name in lib else "a kernel family"
                raise KernelError(f"kernel {k.name!r} is defined twice: in {first} and in {k.origin}")
            lib[k.name] = k
    return lib


def list_kernels(kernels_dir: str | None = None, *, tag: str | None = None) -> list[Kernel]:
    """Named kernels sorted by name, optionally only those tagged ``tag``."""
    ks = sorted(library(kernels_dir).values(), key=lambda k: k.name)
    return [k for k in ks if tag is None or tag.lower() in k.tags]


# --- references ------------------------------------------------------------------------------------
def _parse_inline(ref: str) -> Matrix:
    text = ref.strip()
    what = f"inline matrix {text[:60]!r}"
    if len(text) > _MAX_TEXT_BYTES:
        raise KernelError(f"{what}: longer than {_MAX_TEXT_BYTES} characters")
    if text.startswith("["):
        if not re.fullmatch(r"\[(\[[^\[\]]*\],?)+\]", re.sub(r"\s+", "", text)):
            raise KernelError(f"{what}: expected [[a,b,...],[c,d,...],...], a list of rows "
                              "(a 1-D kernel is [[1,2,1]] or [[1],[2],[1]])")
        rows = re.findall(r"\[([^\[\]]*)\]", text)
    else:
        rows = text.split(";")
        if len(rows) > 1 and not rows[-1].strip():
            rows.pop()
    return kf.as_matrix([_numbers(r, what) for r in rows], what=what)


def _numbers(row: str, what: str) -> list[float]:
    out = []
    for tok in re.split(r"[,\s]+", row.strip()):
        if not tok:
            continue
        try:
            out.append(float(tok))
        except ValueError:
            raise KernelError(f"{what}: {tok!r} is not a number") from None
    return out


def _file_kernel(p: Path, *, name: str | None = None) -> Kernel:
    what = str(p)
    if p.suffix.lower() == ".npy":
        arr = _weights.read_npy(p)
        if arr.ndim != 2:
            raise KernelError(f"{what}: a kernel .npy in a kernels folder must be 2-D, got shape {arr.shape}")
        return _array_kernels(arr, name or p.stem, str(p))[0]
    if p.stat().st_size > _MAX_TEXT_BYTES:
        raise KernelError(f"{what}: larger than {_MAX_TEXT_BYTES >> 10} KiB, not a kernel text file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KernelError(f"{what}: cannot read: {exc}") from None
    rows = [r for r in (line.split("#", 1)[0] for line in text.splitlines()) if r.strip()]
    return Kernel(name or p.stem, kf.as_matrix([_numbers(r, what) for r in rows], what=what), origin=str(p))


def _apply_options(k: Kernel, params: dict[str, float], options: dict[str, str], label: str) -> Kernel:
    w, desc = k.weights, k.description
    if "angle" in params:
        w = kf.rotate(w, params["angle"], what=label)
        desc = f"{desc}; rotated {params['angle']:g} degrees clockwise" if params["angle"] % 360 else desc
    norm = options.get("norm")
    if norm == "auto":
        norm = "signed" if kf.is_zero_sum(w) else "sum"
    if norm:
        w = kf.normalise(w, norm, what=label)
    return k.with_weights(w, name=label, description=desc, normalisation=norm or k.normalisation)


def _canonical(name: str, params: dict[str, float], options: dict[str, str]) -> str:
    items = [f"{k}={v:g}" for k, v in params.items()] + [f"{k}={v}" for k, v in options.items()]
    return f"{name}({','.join(items)})" if items else name


def _resolve_spec(name: str, args: str, ref: str, lib: dict[str, Kernel]) -> Kernel:
    lname = name.lower()
    fam = kf.FAMILIES.get(lname)
    if fam is not None:
        params, options = kf.parse_params(args, fam.params, what=ref)
        label = _canonical(lname, params, options)
        angle = params.pop("angle", None)
        k = Kernel(label, fam.build(params, ref), fam.description, fam.tags, fam.source, fam.default_norm,
                   "family")
        return _apply_options(k, {} if angle is None else {"angle": angle}, options, label)
    base_name = kf.ROTATABLE.get(lname, lname)
    if base_name not in lib and base_name.lower() in lib:
        base_name = base_name.lower()
    if base_name not in lib:
        raise _not_found(name, lib)
    params, options = kf.parse_params(args, ("angle",) if lname in kf.ROTATABLE else (), what=ref)
    return _apply_options(lib[base_name], params, options, _canonical(lname, params, options))


def _not_found(ref: str, lib: dict[str, Kernel]) -> KernelError:
    names = sorted(lib)
    close = difflib.get_close_matches(ref.lower(), [*names, *kf.FAMILIES, *kf.ROTATABLE], n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return KernelError(
        f"kernel {ref!r} not found; known: {', '.join(names)}; families: "
        f"{', '.join([*kf.FAMILIES, *kf.ROTATABLE])}{hint}"
    )


def expand(ref: str, *, kernels_dir: str | None = None, allow_torchscript: bool = False
           ) -> list[Kernel] | LearnedWeight:
    """Resolve ``ref`` to its 2-D kernels (several for a 3-D array) or to a learned 4-D conv layer."""
    text = ref.strip()
    if not text:
        raise KernelError("empty kernel reference")
    p = Path(text)
    if text.startswith("[") or (_NUMERIC.match(text) and not _weights.is_file(p)):
        w = _parse_inline(text)
        return [Kernel(f"inline{len(w)}x{len(w[0])}", w, origin="inline")]
    if _weights.is_file(p):
        suffix = p.suffix.lower()
        if suffix == ".toml":
            return [_pick_toml(p, None)]
        return _learned(text, allow_torchscript) if suffix in _weights.WEIGHT_SUFFIXES else [_file_kernel(p)]
    if _weights.is_weights_ref(text):
        return _learned(text, allow_torchscript)
    if ":" in text and Path(text.rsplit(":", 1)[0]).suffix.lower() == ".toml":
        path, _, name = text.rpartition(":")
        return [_pick_toml(Path(path), name)]
    lib = library(kernels_dir)
    m = _SPEC.match(text)
    if m:
        return [_resolve_spec(m.group(1), m.group(2) if m.group(2) is not None else m.group(3), text, lib)]
    if text in lib or text.lower() in lib:
        return [lib.get(text) or lib[text.lower()]]
    if text.lower() in kf.FAMILIES or text.lower() in kf.ROTATABLE:
        return [_resolve_spec(text, "", text, lib)]
    if "/" in text or os.sep in text or p.suffix:
        raise KernelError("kernel file not found", path=text)
    raise _not_found(text, lib)


def _array_kernels(arr: Any, name: str, origin: str) -> list[Kernel]:
    """2-D array: one kernel; 3-D ``(n, kh, kw)``: n kernels. Integers are fine (hand-written kernels)."""
    if arr.dtype.kind not in "iuf":
        raise KernelError(f"{origin}: dtype {arr.dtype}; a kernel must hold real numbers (int or float)")
    if arr.ndim == 2:
        return [Kernel(name, kf.as_matrix(arr.astype("float64").tolist(), what=origin), origin=origin)]
    if arr.ndim == 3 and 0 < arr.shape[0] <= 4096:
        return [Kernel(f"{name}[{i}]", kf.as_matrix(m, what=origin), origin=origin)
                for i, m in enumerate(arr.astype("float64").tolist())]
    raise KernelError(f"{origin}: shape {arr.shape}; expected (kh, kw) or (n, kh, kw)")


def _learned(text: str, allow_torchscript: bool) -> list[Kernel] | LearnedWeight:
    path, key = _weights.split_ref(text)
    if Path(path).suffix.lower() == ".npy" and not key and _weights.is_file(path):
        arr = _weights.read_npy(path)
        if arr.ndim in (2, 3):
            return _array_kernels(arr, Path(path).stem, path)
    lw = _weights.load_weight(text, allow_torchscript=allow_torchscript)
    if lw.weight.ndim == 4:
        return lw
    if lw.weight.ndim == 2:
        return [Kernel(lw.label, kf.as_matrix(lw.weight.tolist(), what=text), origin=lw.path)]
    return [Kernel(f"{lw.label}[{i}]", kf.as_matrix(m, what=text), origin=lw.path)
            for i, m in enumerate(lw.weight.tolist())]


def _pick_toml(p: Path, name: str | None) -> Kernel:
    if not _weights.is_file(p):
        raise KernelError("kernel file not found", path=str(p))
    ks = _parse_toml(p)
    if name is None and len(ks) == 1:
        return ks[0]
    for k in ks:
        if k.name == name:
            return k
    names = ", ".join(k.name for k in ks)
    raise KernelError(f"holds kernels {names}; pick one with FILE.toml:NAME", path=str(p))


def resolve(ref: str, *, kernels_dir: str | None = None, allow_torchscript: bool = False) -> Kernel:
    """Resolve one reference to one 2-D :class:`Kernel` (see the module docstring for the forms).

    Raises:
        KernelError: unknown name (with suggestions), bad parameters or matrix, a file of several kernels.
        WeightsError: a learned-weight file that cannot be loaded safely.
    """
    got = expand(ref, kernels_dir=kernels_dir, allow_torchscript=allow_torchscript)
    if not isinstance(got, list):
        raise KernelError(f"{ref}: is a whole conv layer of shape {tuple(got.shape)}, not one 2-D kernel; "
                          "use it as a stage's weights (featcli run -k ...)")
    if len(got) != 1:
        raise KernelError(f"{ref}: holds {len(got)} kernels, not one")
    return got[0]


# --- kernels meet images ---------------------------------------------------------------------------
def _plan(refs: Sequence[str], kernels_dir: str | None, allow_torchscript: bool
          ) -> list[Kernel] | LearnedWeight:
    """The kernels of one stage, padded to a common size, or its single learned 4-D layer."""
    refs = [refs] if isinstance(refs, str) else list(refs)
    if not refs:
        raise KernelError("no kernel given")
    kernels: list[Kernel] = []
    for ref in refs:
        got = expand(ref, kernels_dir=kernels_dir, allow_torchscript=allow_torchscript)
        if not isinstance(got, list):
            if len(refs) > 1:
                raise KernelError(f"{ref}: a whole conv layer {tuple(got.shape)} must be the only kernel "
                                  "of its stage")
            return got
        kernels.extend(got)
    kh = max(k.shape[0] for k in kernels)
    kw = max(k.shape[1] for k in kernels)
    big = next(k for k in kernels if k.shape[0] == kh) if kh else kernels[0]
    out: list[Kernel] = []
    for k in kernels:
        h, w = k.shape
        if (kh - h) % 2 or (kw - w) % 2:
            raise KernelError(
                f"kernels {k.name} ({h}x{w}) and {big.name} ({kh}x{kw}, the largest) cannot share a stage: "
                "a smaller kernel is zero-padded centred, so each side must be both odd or both even"
            )
        out.append(k if (h, w) == (kh, kw) else k.with_weights(kf.pad_to(k.weights, kh, kw)))
    return out


def stage_kernels(refs: Sequence[str], kernels_dir: str | None = None, allow_torchscript: bool = False
                  ) -> list[Kernel] | LearnedWeight:
    """The 2-D kernels of one conv stage, zero-padded centred to a common size, or its one learned layer."""
    return _plan(refs, kernels_dir, allow_torchscript)


def _learned_groups(lw: LearnedWeight, in_channels: int, mode: KernelMode) -> int:
    out, cin = lw.weight.shape[0], lw.weight.shape[1]
    if cin == in_channels:
        return 1
    if cin == 1 and mode is KernelMode.DEPTHWISE and out % in_channels == 0:
        return in_channels  # a depthwise layer (MobileNet-style), asked for explicitly
    shape = "x".join(str(s) for s in lw.shape)
    raise ShapeError(f"{lw.ref} ({shape}) expects {cin} input channels, the image has {in_channels}")


def _check_channels(in_channels: int) -> None:
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ShapeError(f"in_channels={in_channels!r}; expected a whole number >= 1")


def conv_weight_shape(
    refs: Sequence[str],
    in_channels: int,
    mode: KernelMode,
    kernels_dir: str | None = None,
    *,
    allow_torchscript: bool = False,
) -> tuple[int, int, int, int, int]:
    """``(out_channels, in_channels_per_group, kh, kw, groups)`` of the conv that applies ``refs``.

    For n 2-D kernels on C channels: ``sum`` -> ``(n, C, kh, kw, 1)``; ``gray`` -> ``(n, 1, kh, kw, 1)``;
    ``depthwise`` -> ``(n*C, 1, kh, kw, C)``. A learned 4-D weight gives its own shape (mode ignored, except
    that a ``(m, 1, kh, kw)`` weight with ``depthwise`` runs with ``groups=C``). Pure Python unless a ref
    is a weight file.

    >>> conv_weight_shape(["sobel_x", "sobel_y"], 3, KernelMode.SUM)
    (2, 3, 3, 3, 1)

    Raises:
        KernelError: a bad reference, or kernel sizes that cannot be centred together.
        ShapeError: a learned weight whose input channels do not match ``in_channels``.
    """
    _check_channels(in_channels)
    mode = KernelMode(mode)
    plan = _plan(refs, kernels_dir, allow_torchscript)
    if not isinstance(plan, list):
        o, i, kh, kw = (int(s) for s in plan.shape)
        return o, i, kh, kw, _learned_groups(plan, in_channels, mode)
    n, (kh, kw) = len(plan), plan[0].shape
    if mode is KernelMode.SUM:
        return n, in_channels, kh, kw, 1
    if mode is KernelMode.GRAY:
        return n, 1, kh, kw, 1
    return n * in_channels, 1, kh, kw, in_channels


def channel_names(in_channels: int) -> list[str]:
    """Default names of input channels in labels: R, G, B for 3 channels, else 0, 1, ..."""
    return ["R", "G", "B"] if in_channels == 3 else [str(i) for i in range(in_channels)]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def conv_weight(
    refs: Sequence[str],
    in_channels: int,
    mode: KernelMode,
    *,
    kernels_dir: str | None = None,
    dtype: torch.dtype | None = None,
    allow_torchscript: bool = False,
    channel_labels: Sequence[str] | None = None,
) -> ConvWeight:
    """The conv weight tensor ``(out, in / groups, kh, kw)`` that applies ``refs`` in ``mode``.

    ``sum``: ``weight[o, c] = kernel_o`` for every input channel c (the classic 3x3x3x2 Sobel example is
    ``conv_weight(["sobel_x", "sobel_y"], 3, "sum")``); ``gray``: ``(n, 1, kh, kw)`` and ``gray=True``;
    ``depthwise``: ``groups=C``, output channel ``c * n + o`` is kernel o on channel c, labelled
    ``"sobel_x[R]"``. ``dtype`` defaults to float32.

    Raises:
        KernelError, WeightsError, ShapeError: as :func:`conv_weight_shape`.
    """
    import torch

    _check_channels(in_channels)
    mode = KernelMode(mode)
    dtype = torch.float32 if dtype is None else dtype
    plan = _plan(refs, kernels_dir, allow_torchscript)
    if not isinstance(plan, list):
        groups = _learned_groups(plan, in_channels, mode)
        bias = None if plan.bias is None else plan.bias.to(dtype)
        labels = [f"{plan.label}[{o}]" for o in range(plan.weight.shape[0])]
        return ConvWeight(plan.weight.to(dtype), bias, groups, labels, False)
    names = _unique([k.name for k in plan])
    k3 = torch.tensor([k.weights for k in plan], dtype=torch.float64).to(dtype)  # (n, kh, kw)
    n, kh, kw = k3.shape
    if mode is KernelMode.SUM:
        weight = k3[:, None].expand(n, in_channels, kh, kw).contiguous()
        return ConvWeight(weight, None, 1, names, False, tuple(plan))
    if mode is KernelMode.GRAY:
        return ConvWeight(k3[:, None].contiguous(), None, 1, names, True, tuple(plan))
    chans = list(channel_labels) if channel_labels is not None else channel_names(in_channels)
    if len(chans) != in_channels:
        raise KernelError(f"{len(chans)} channel labels for {in_channels} channels")
    labels = [f"{name}[{c}]" if in_channels > 1 else name for c in chans for name in names]
    weight = k3.repeat(in_channels, 1, 1)[:, None].contiguous()
    return ConvWeight(weight, None, in_channels, labels, False, tuple(plan))
