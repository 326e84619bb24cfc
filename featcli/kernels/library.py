"""The kernel library: kernel files (TOML, text, ``.npy``), the folders that hold them, and :func:`library`.

Built-in kernels are the ``*.toml`` files shipped with featcli (:func:`featcli.resources.kernels_dir`);
user folders (``--kernels-dir`` or ``$FEATCLI_KERNELS_DIR``) may also hold one-kernel ``NAME.txt`` and
``NAME.npy`` files. A folder's kernels are parsed once and again only after one of its files changed
(:mod:`featcli.kernels.cache`).

A TOML library file holds ``[[kernel]]`` tables with ``name``, ``weights`` and optionally ``description``,
``tags``, ``source`` and ``normalisation`` (``none``, ``sum`` or ``signed``). A text file holds one row per
line, numbers separated by spaces or commas, ``#`` starting a comment.

Only the standard library is imported at module level; numpy only to read an ``.npy`` file.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from featcli.errors import KernelError
from featcli.io.checkpoints import read_npy
from featcli.kernels import cache
from featcli.kernels.families import FAMILIES, ROTATABLE
from featcli.kernels.kernel import Kernel
from featcli.kernels.matrix import as_matrix, normalise, parse_norm
from featcli.resources import kernels_dir as builtin_kernels_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The environment variable naming user kernel folders (an ``os.pathsep``-separated list).
ENV_VAR = "FEATCLI_KERNELS_DIR"
#: Largest kernel text (a file or an inline matrix) read, in bytes.
MAX_TEXT_BYTES = 1 << 20
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_TOML_KEYS = {"name", "weights", "description", "tags", "source", "normalisation"}


def parse_toml(path: Path) -> list[Kernel]:
    """The kernels of a library file: ``[[kernel]]`` tables, or one kernel's keys at the top level."""
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
    if not isinstance(norm, str) or parse_norm(norm, what=what) == "auto":
        raise KernelError(f"kernel {name!r}: normalisation must be none, sum or signed", path=str(path))
    weights = normalise(as_matrix(t["weights"], what=what), norm, what=what)
    return Kernel(name, weights, t.get("description", ""), tuple(tags), t.get("source", ""),
                  parse_norm(norm, what=what), str(path))


def _dir_kernels(folder: Path, *, builtin: bool) -> list[Kernel]:
    if not folder.is_dir():
        raise KernelError("kernels folder does not exist", path=str(folder))
    found: list[Kernel] = []
    for p in sorted(folder.iterdir()):
        if p.suffix == ".toml":
            found.extend(parse_toml(p))
        elif not builtin and p.suffix in (".txt", ".npy") and _NAME.match(p.stem):
            found.append(file_kernel(p, name=p.stem))
    if builtin:
        found = [k.with_weights(k.weights, origin="built-in") for k in found]
    return found


def _load_dir(folder: Path, *, builtin: bool) -> tuple[Kernel, ...]:
    """The kernels of one folder, parsed again only when a kernel file in it changed (see :mod:`.cache`)."""
    where = str(folder.resolve())

    def parse() -> tuple[Kernel, ...]:
        cache.depends_on("folder", where)
        return tuple(_dir_kernels(Path(where), builtin=builtin))

    return cache.cached(("folder", where, builtin), parse)


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
            if k.name in lib or (not builtin and (k.name in FAMILIES or k.name in ROTATABLE)):
                first = lib[k.name].origin if k.name in lib else "a kernel family"
                raise KernelError(f"kernel {k.name!r} is defined twice: in {first} and in {k.origin}")
            lib[k.name] = k
    return lib


def list_kernels(kernels_dir: str | None = None, *, tag: str | None = None) -> list[Kernel]:
    """Named kernels sorted by name, optionally only those tagged ``tag``."""
    ks = sorted(library(kernels_dir).values(), key=lambda k: k.name)
    return [k for k in ks if tag is None or tag.lower() in k.tags]


# --- one kernel file ------------------------------------------------------------------------------
def numbers(row: str, what: str, *, line: int | None = None) -> list[float]:
    """The numbers of one matrix row, separated by commas or whitespace.

    ``line``: the row is line ``line`` of a file. The message then names the line and not the text: a
    file given as a kernel may be anything (``conv:w=/etc/shadow``) and errors never echo its contents.

    >>> numbers("1, 0 -1", "k")
    [1.0, 0.0, -1.0]
    """
    out = []
    for tok in re.split(r"[,\s]+", row.strip()):
        if not tok:
            continue
        try:
            out.append(float(tok))
        except ValueError:
            if line is not None:
                raise KernelError(f"{what}: line {line} is not a row of numbers (a kernel text file has one "
                                  "row of numbers per line, '#' comments)") from None
            raise KernelError(f"{what}: {tok!r} is not a number") from None
    return out


def file_kernel(p: Path, *, name: str | None = None) -> Kernel:
    """The one kernel of a text file (a row per line, ``#`` comments) or a 2-D ``.npy`` file."""
    what = str(p)
    if p.suffix.lower() == ".npy":
        arr = read_npy(p)
        if arr.ndim != 2:
            raise KernelError(f"{what}: a kernel .npy in a kernels folder must be 2-D, got shape {arr.shape}")
        return array_kernels(arr, name or p.stem, str(p))[0]
    too_big = KernelError(f"{what}: larger than {MAX_TEXT_BYTES >> 10} KiB, not a kernel text file")
    if p.stat().st_size > MAX_TEXT_BYTES:
        raise too_big
    try:
        with p.open("rb") as fh:  # bounded even where st_size says 0 (/proc files, pipes)
            data = fh.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise KernelError(f"{what}: cannot read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_TEXT_BYTES:
        raise too_big
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KernelError(f"{what}: not a kernel text file (not UTF-8 text at byte {exc.start})") from None
    rows = [(n, r) for n, r in enumerate((ln.split("#", 1)[0] for ln in text.splitlines()), 1) if r.strip()]
    matrix = [numbers(r, what, line=n) for n, r in rows]
    return Kernel(name or p.stem, as_matrix(matrix, what=what), origin=str(p))


def array_kernels(arr: Any, name: str, origin: str) -> list[Kernel]:
    """2-D array: one kernel; 3-D ``(n, kh, kw)``: n kernels. Integers are fine (hand-written kernels)."""
    if arr.dtype.kind not in "iuf":
        raise KernelError(f"{origin}: dtype {arr.dtype}; a kernel must hold real numbers (int or float)")
    if arr.ndim == 2:
        return [Kernel(name, as_matrix(arr.astype("float64").tolist(), what=origin), origin=origin)]
    if arr.ndim == 3 and 0 < arr.shape[0] <= 4096:
        return [Kernel(f"{name}[{i}]", as_matrix(m, what=origin), origin=origin)
                for i, m in enumerate(arr.astype("float64").tolist())]
    raise KernelError(f"{origin}: shape {arr.shape}; expected (kh, kw) or (n, kh, kw)")
