"""Where the data shipped with featcli lives: the kernel library and the sample images.

In a wheel, ``kernels/`` and ``samples/`` are installed inside the package as ``featcli/_kernels`` and
``featcli/_samples``; in a source checkout they are the top-level folders beside ``featcli/``.
"""

from __future__ import annotations

from pathlib import Path

from featcli.errors import FeatcliError

_PKG = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    for candidate in (_PKG / f"_{name}", _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FeatcliError(f"featcli's {name}/ folder is missing from the installation (looked in {_PKG})")


def kernels_dir() -> Path:
    """Folder of the built-in kernel library (``*.toml`` files)."""
    return _data_dir("kernels")


def samples_dir() -> Path:
    """Folder of the bundled sample images."""
    return _data_dir("samples")


def sample_names() -> list[str]:
    """Stems of the bundled sample images, sorted."""
    exts = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".tif", ".tiff", ".bmp"}
    return sorted(p.stem for p in samples_dir().iterdir() if p.suffix.lower() in exts)


def sample_path(name: str) -> Path:
    """Path of the bundled sample ``name`` (stem, e.g. ``"checkerboard"``)."""
    matches = [p for p in samples_dir().iterdir() if p.stem == name and not p.name.endswith(".py")]
    if not matches:
        raise FeatcliError(f"no sample named {name!r}; known: {', '.join(sample_names())}")
    return matches[0]
