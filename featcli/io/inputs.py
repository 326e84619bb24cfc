"""Which files a run reads: inputs from paths, folders, globs and path lists, and a distinct stem for each."""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from featcli.errors import UsageError

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".pbm",
                        ".pgm", ".ppm", ".pnm", ".tga", ".ico"})
_GLOB_CHARS = set("*?[")


def _walk(folder: Path, recursive: bool) -> list[str]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(str(p) for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def read_path_list(source: str) -> list[str]:
    """Paths one per line from a file or ``-`` (stdin); blank lines and ``#`` comments skipped."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise UsageError(f"--from-file {source}: {exc.strerror or exc}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def discover(args: Iterable[str], *, recursive: bool = False, from_file: str | None = None) -> list[str]:
    """Expand inputs: files as given, globs (``**`` with ``recursive``), folders (their images, sorted).

    Paths that do not exist are kept, so the batch reports them as failed instead of silently dropping
    them; a glob that matches nothing is kept the same way. Duplicates are removed, order is kept.
    """
    out: list[str] = []
    items = list(args) + (read_path_list(from_file) if from_file else [])
    for item in items:
        p = Path(item)
        if item == "-" or p.is_file():
            out.append(item)
        elif p.is_dir():
            out.extend(_walk(p, recursive))
        elif _GLOB_CHARS & set(item):
            matches = sorted(glob.glob(item, recursive=recursive))
            expanded: list[str] = []
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    expanded.extend(_walk(mp, recursive))
                elif mp.suffix.lower() in IMAGE_EXTS:
                    expanded.append(m)
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
