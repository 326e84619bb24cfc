"""The reference grammar: what ``-k`` and ``conv:w=`` accept, turned into kernels or a learned layer.

A kernel reference is one of:

- a library name: ``sobel_x`` (built-in, or from a user folder: ``kernels_dir`` / ``FEATCLI_KERNELS_DIR``);
- a family or library name with parameters, in either form: ``gaussian:size=7,sigma=1.5`` or
  ``gaussian(size=7,sigma=1.5)``; every kernel also takes ``angle=`` (multiples of 45, clockwise) and
  ``norm=`` (``sum``, ``signed``, ``auto``/``1``, ``none``/``0``);
- an inline matrix: ``[[1,0,-1],[2,0,-2],[1,0,-1]]`` or ``1 0 -1; 2 0 -2; 1 0 -1``;
- a file: a whitespace/comma text matrix, ``.npy`` (2-D, or 3-D for several kernels), a ``.toml`` in the
  library's format (``FILE.toml:NAME`` picks one of several);
- learned weights ``FILE:KEY`` (see :mod:`featcli.kernels.learned`).

:func:`expand` resolves one reference, :func:`resolve` one that must be a single 2-D kernel, and
:func:`stage_kernels` the references of one conv stage, cached until a file they read changes.
Only the standard library is imported at module level.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from featcli.errors import KernelError
from featcli.io.checkpoints import is_file, read_npy
from featcli.kernels import cache
from featcli.kernels.families import FAMILIES, ROTATABLE, parse_params
from featcli.kernels.kernel import Kernel
from featcli.kernels.learned import WEIGHT_SUFFIXES, LearnedWeight, is_weights_ref, load_weight, split_ref
from featcli.kernels.library import (
    ENV_VAR,
    MAX_TEXT_BYTES,
    array_kernels,
    file_kernel,
    library,
    numbers,
    parse_toml,
)
from featcli.kernels.matrix import Matrix, as_matrix, is_zero_sum, normalise, pad_to, rotate

_SPEC = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\)|:(.*))\Z", re.S)
_NUMERIC = re.compile(r"[-+0-9]|\.[0-9]|;")  # how an inline "rows; with; semicolons" matrix starts


def _exists(path: str | Path) -> bool:
    """Whether ``path`` is a file; what a reference means depends on it, so a cached result does too."""
    cache.depends_on("file", path)
    return is_file(path)


def _parse_inline(ref: str) -> Matrix:
    text = ref.strip()
    what = f"inline matrix {text[:60]!r}"
    if len(text) > MAX_TEXT_BYTES:
        raise KernelError(f"{what}: longer than {MAX_TEXT_BYTES} characters")
    if text.startswith("["):
        if not re.fullmatch(r"\[(\[[^\[\]]*\],?)+\]", re.sub(r"\s+", "", text)):
            raise KernelError(f"{what}: expected [[a,b,...],[c,d,...],...], a list of rows "
                              "(a 1-D kernel is [[1,2,1]] or [[1],[2],[1]])")
        rows = re.findall(r"\[([^\[\]]*)\]", text)
    else:
        rows = text.split(";")
        if len(rows) > 1 and not rows[-1].strip():
            rows.pop()
    return as_matrix([numbers(r, what) for r in rows], what=what)


def _apply_options(k: Kernel, params: dict[str, float], options: dict[str, str], label: str) -> Kernel:
    w, desc = k.weights, k.description
    if "angle" in params:
        w = rotate(w, params["angle"], what=label)
        desc = f"{desc}; rotated {params['angle']:g} degrees clockwise" if params["angle"] % 360 else desc
    norm = options.get("norm")
    if norm == "auto":
        norm = "signed" if is_zero_sum(w) else "sum"
    if norm:
        w = normalise(w, norm, what=label)
    return k.with_weights(w, name=label, description=desc, normalisation=norm or k.normalisation)


def _canonical(name: str, params: dict[str, float], options: dict[str, str]) -> str:
    items = [f"{k}={v:g}" for k, v in params.items()] + [f"{k}={v}" for k, v in options.items()]
    return f"{name}({','.join(items)})" if items else name


def _resolve_spec(name: str, args: str, ref: str, lib: dict[str, Kernel]) -> Kernel:
    lname = name.lower()
    fam = FAMILIES.get(lname)
    if fam is not None:
        params, options = parse_params(args, fam.params, what=ref)
        label = _canonical(lname, params, options)
        angle = params.pop("angle", None)
        k = Kernel(label, fam.build(params, ref), fam.description, fam.tags, fam.source, fam.default_norm,
                   "family")
        return _apply_options(k, {} if angle is None else {"angle": angle}, options, label)
    base_name = ROTATABLE.get(lname, lname)
    if base_name not in lib and base_name.lower() in lib:
        base_name = base_name.lower()
    if base_name not in lib:
        raise _not_found(name, lib)
    params, options = parse_params(args, ("angle",) if lname in ROTATABLE else (), what=ref)
    return _apply_options(lib[base_name], params, options, _canonical(lname, params, options))


def _not_found(ref: str, lib: dict[str, Kernel]) -> KernelError:
    names = sorted(lib)
    candidates = list(dict.fromkeys([*names, *FAMILIES, *ROTATABLE]))  # box is a kernel and a family: once
    close = difflib.get_close_matches(ref.lower(), candidates, n=3, cutoff=0.6)
    close = sorted(close)
    hint = f" (did you mean {', '.join(close[:-1])} or {close[-1]}?)" if len(close) > 1 else \
        f" (did you mean {close[0]}?)" if close else ""
    return KernelError(
        f"kernel {ref!r} not found{hint}; known: {', '.join(names)}; families: "
        f"{', '.join([*FAMILIES, *ROTATABLE])} (featcli kernels list describes them)"
    )


def expand(ref: str, *, kernels_dir: str | None = None, allow_torchscript: bool = False
           ) -> list[Kernel] | LearnedWeight:
    """Resolve ``ref`` to its 2-D kernels (several for a 3-D array) or to a learned 4-D conv layer."""
    text = ref.strip()
    if not text:
        raise KernelError("empty kernel reference")
    p = Path(text)
    if text.startswith("[") or (_NUMERIC.match(text) and not _exists(p)):
        w = _parse_inline(text)
        return [Kernel(f"inline{len(w)}x{len(w[0])}", w, origin="inline")]
    if _exists(p):
        suffix = p.suffix.lower()
        if suffix == ".toml":
            return [_pick_toml(p, None)]
        return _learned(text, allow_torchscript) if suffix in WEIGHT_SUFFIXES else [file_kernel(p)]
    if is_weights_ref(text):
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
    if text.lower() in FAMILIES or text.lower() in ROTATABLE:
        return [_resolve_spec(text, "", text, lib)]
    if "/" in text or os.sep in text or p.suffix:
        raise KernelError("kernel file not found", path=text)
    raise _not_found(text, lib)


def _learned(text: str, allow_torchscript: bool) -> list[Kernel] | LearnedWeight:
    path, key = split_ref(text)
    if Path(path).suffix.lower() == ".npy" and not key and _exists(path):
        arr = read_npy(path)
        if arr.ndim in (2, 3):
            return array_kernels(arr, Path(path).stem, path)
    lw = load_weight(text, allow_torchscript=allow_torchscript)
    if lw.weight.ndim == 4:
        return lw
    if lw.weight.ndim == 2:
        return [Kernel(lw.label, as_matrix(lw.weight.tolist(), what=text), origin=lw.path)]
    return [Kernel(f"{lw.label}[{i}]", as_matrix(m, what=text), origin=lw.path)
            for i, m in enumerate(lw.weight.tolist())]


def _pick_toml(p: Path, name: str | None) -> Kernel:
    if not _exists(p):
        raise KernelError("kernel file not found", path=str(p))
    ks = parse_toml(p)
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


# --- one conv stage's kernels -----------------------------------------------------------------------
def _stage(refs: tuple[str, ...], kernels_dir: str | None, allow_torchscript: bool
           ) -> tuple[Kernel, ...] | LearnedWeight:
    """The kernels of one stage, padded to a common size, or its single learned 4-D layer."""
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
        out.append(k if (h, w) == (kh, kw) else k.with_weights(pad_to(k.weights, kh, kw)))
    return tuple(out)


def stage_kernels(refs: Sequence[str], kernels_dir: str | None = None, allow_torchscript: bool = False
                  ) -> list[Kernel] | LearnedWeight:
    """The 2-D kernels of one conv stage, zero-padded centred to a common size, or its one learned layer.

    Cached (:mod:`featcli.kernels.cache`): a repeated call costs a ``stat`` of each file the references
    read (kernel files, checkpoints, the library folders' kernel files) and returns the earlier kernels
    while none of them changed. The learned layer is shared between callers: do not modify its tensors.

    Raises:
        KernelError, WeightsError: as :func:`expand`; also kernel sizes that cannot be centred together.
    """
    names = (refs,) if isinstance(refs, str) else tuple(refs)
    dirs = kernels_dir if kernels_dir is not None else os.environ.get(ENV_VAR, "")
    key = ("stage", names, dirs, allow_torchscript, os.getcwd())
    got = cache.cached(key, lambda: _stage(names, kernels_dir, allow_torchscript))
    return list(got) if isinstance(got, tuple) else got
