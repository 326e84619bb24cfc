"""Where the data shipped with featcli lives: the kernel library, the sample images and the example stacks.

In a wheel, ``kernels/``, ``samples/`` and ``stacks/`` are installed inside the package as ``featcli/_kernels``,
``featcli/_samples`` and ``featcli/_stacks``; in a source checkout they are the top-level folders beside
``featcli/``.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from featcli.errors import FeatcliError

_PKG = Path(__file__).resolve().parent


@functools.cache
def _data_dir(name: str) -> Path:
    for candidate in (_PKG / f"_{name}", _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FeatcliError(f"featcli's {name}/ folder is missing from the installation (looked in {_PKG})")


def kernels_dir() -> Path:
    """Folder of the built-in kernel library (``*.toml`` files)."""
    return _data_dir("kernels")


def stacks_dir() -> Path:
    """Folder of the example stacks (``@resnet18`` is ``resnet18.txt`` there)."""
    return _data_dir("stacks")


def samples_dir() -> Path:
    """Folder of the bundled sample images."""
    return _data_dir("samples")


#: ``sample:NAME`` names a bundled sample wherever an image path is taken (when no such file exists).
SAMPLE_PREFIX = "sample:"
_SAMPLE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".tif", ".tiff", ".bmp"}


def sample_names() -> list[str]:
    """Stems of the bundled sample images, sorted."""
    return sorted(p.stem for p in samples_dir().iterdir() if p.suffix.lower() in _SAMPLE_EXTS)


def sample_path(name: str) -> Path:
    """Path of the bundled sample ``name`` (stem, e.g. ``"checkerboard"``)."""
    matches = [p for p in samples_dir().iterdir() if p.stem == name and p.suffix.lower() in _SAMPLE_EXTS]
    if not matches:
        import difflib

        close = difflib.get_close_matches(name, sample_names(), n=1)
        hint = f" (did you mean sample:{close[0]}?)" if close else ""
        raise FeatcliError(f"no sample named {name!r}{hint}; featcli samples lists them: "
                           f"{', '.join(sample_names())}")
    return matches[0]


def sample_descriptions() -> dict[str, str]:
    """What each sample shows, from ``samples/index.toml`` (empty when the file is missing)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    index = samples_dir() / "index.toml"
    if not index.is_file():
        return {}
    return {str(k): str(v) for k, v in tomllib.loads(index.read_text(encoding="utf-8")).items()}


def resolve_sample(text: str) -> str:
    """``sample:NAME`` -> the sample's path; any other text (or an existing file of that name) unchanged.

    >>> Path(resolve_sample("sample:shapes")).name
    'shapes.png'
    """
    if not text.startswith(SAMPLE_PREFIX) or os.path.lexists(text):
        return text
    return str(sample_path(text[len(SAMPLE_PREFIX):]))



def sample_name(path: str | os.PathLike[str]) -> str | None:
    """``sample:NAME`` when ``path`` is a bundled sample (how messages and records show it), else None.

    >>> sample_name(sample_path("photo")), sample_name("photo.jpg")
    ('sample:photo', None)
    """
    try:
        p = os.path.abspath(os.fspath(path))
        folder = str(samples_dir())
    except (OSError, ValueError, FeatcliError):
        return None
    stem, ext = os.path.splitext(os.path.basename(p))
    return f"{SAMPLE_PREFIX}{stem}" if os.path.dirname(p) == folder and ext.lower() in _SAMPLE_EXTS else None
