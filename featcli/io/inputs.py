"""Which files a run reads: inputs from paths, folders, globs and path lists, and a distinct stem for each."""

from __future__ import annotations

import glob
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from featcli.errors import UsageError
from featcli.resources import resolve_sample

#: Extensions a folder or glob picks up: the raster formats Pillow decodes itself. Left out on purpose:
#: .eps/.ps (decoded by running Ghostscript), .wmf/.emf (Windows only), .pdf (write-only), and the stub
#: formats that need extra plugins (.h5, .grib, .bufr, .fits). Any file given by name is tried whatever
#: its extension; a folder's other files are counted and reported as skipped.
IMAGE_EXTS = frozenset({
    ".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".avif", ".bmp", ".dib", ".tif", ".tiff",
    ".gif", ".pbm", ".pgm", ".ppm", ".pnm", ".pfm", ".tga", ".ico", ".cur", ".icns", ".jp2", ".j2k", ".jpx",
    ".j2c", ".jpc", ".jpf", ".psd", ".dds", ".qoi", ".pcx", ".sgi", ".rgb", ".rgba", ".bw", ".ras", ".xbm",
    ".xpm", ".im", ".msp", ".fli", ".flc", ".blp", ".dcx",
})
_GLOB_CHARS = set("*?[")


def exists(path: str) -> bool:
    """``os.path.exists`` that answers False for names no file can have (too long, NUL bytes, ...).

    ``Path.exists`` raises ``OSError: File name too long`` for a 300-byte argument, which on the command
    line is far more likely an inline kernel (``conv:w=[[...]]``) than a file.
    """
    try:
        return os.path.exists(path)
    except (OSError, ValueError):
        return False


def _walk(folder: Path, recursive: bool, skipped: Counter[str] | None = None) -> list[str]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    images = []
    for p in found:
        if not p.is_file():
            continue
        ext = p.suffix.lower()
        if ext in IMAGE_EXTS:
            images.append(str(p))
        elif skipped is not None and not p.name.startswith("."):  # hidden files are nobody's images
            skipped[ext or "(no extension)"] += 1
    return sorted(images)


def skipped_note(skipped: Counter[str]) -> str | None:
    """One line saying which files folders and globs left out, or None when none were.

    >>> skipped_note(Counter({".txt": 3, ".psx": 1}))
    'skipped 4 file(s) without an image extension (.txt: 3, .psx: 1); name a file to try it anyway'
    """
    total = sum(skipped.values())
    if not total:
        return None
    common = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
    kinds = ", ".join(f"{ext}: {n}" for ext, n in common) + (", ..." if len(skipped) > 6 else "")
    return f"skipped {total} file(s) without an image extension ({kinds}); name a file to try it anyway"


def read_path_list(source: str) -> list[str]:
    """Paths one per line from a file or ``-`` (stdin); blank lines and ``#`` comments skipped."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"--from-file {source}: {exc.strerror or exc}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def discover(args: Iterable[str], *, recursive: bool = False, from_file: str | None = None,
             skipped: Counter[str] | None = None) -> list[str]:
    """Expand inputs: files as given, ``sample:NAME`` (a bundled sample), globs (``**`` with ``recursive``),
    folders (their images, sorted).

    Paths that do not exist are kept, so the batch reports them as failed instead of silently dropping
    them; a glob that matches nothing is kept the same way. Duplicates are removed, order is kept.
    ``skipped`` (if given) counts, by extension, the files folders and globs left out.
    """
    out: list[str] = []
    items = list(args) + (read_path_list(from_file) if from_file else [])
    for item in map(resolve_sample, items):
        p = Path(item)
        if item == "-" or (exists(item) and p.is_file()):
            out.append(item)
        elif exists(item) and p.is_dir():
            out.extend(_walk(p, recursive, skipped))
        elif _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=recursive))
            expanded: list[str] = []
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    expanded.extend(_walk(mp, recursive, skipped))
                elif mp.suffix.lower() in IMAGE_EXTS:
                    expanded.append(m)
                elif skipped is not None and mp.is_file():
                    skipped[mp.suffix.lower() or "(no extension)"] += 1
            out.extend(expanded or [item])
        else:
            out.append(item)
    seen: set[str] = set()
    unique = []
    for path in out:
        key = os.path.normpath(path) if path != "-" else path
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def unique_stems(paths: Sequence[str]) -> list[str]:
    """A distinct ``{stem}`` per input: ``a.png``/``a.jpg`` become ``a_png``/``a_jpg``; same names in
    different folders get the folder (``x_a``, ``y_a``), and any still-equal ones a number.

    >>> unique_stems(["a.png", "a.jpg", "b.png"])
    ['a_png', 'a_jpg', 'b']
    """
    def base(p: str) -> Path:
        return Path("stdin") if p == "-" else Path(p)

    stems = [base(p).stem for p in paths]
    counts = {s: stems.count(s) for s in stems}
    out = []
    for p, s in zip(paths, stems, strict=True):
        if counts[s] > 1:
            bp = base(p)
            s = f"{s}_{bp.suffix.lstrip('.').lower()}" if bp.suffix else s
        out.append(s)
    counts = {s: out.count(s) for s in out}
    out = [f"{base(p).parent.name}_{s}" if counts[s] > 1 and base(p).parent.name else s
           for p, s in zip(paths, out, strict=True)]
    seen: dict[str, int] = {}
    final = []
    for s in out:
        seen[s] = seen.get(s, 0) + 1
        final.append(s if seen[s] == 1 else f"{s}_{seen[s]}")
    return final
