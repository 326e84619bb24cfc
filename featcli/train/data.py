"""The data a network trains on: ``digits``, ``orientation``, or a class-per-sub-folder image folder.

- ``digits``: the 1,797 8x8 handwritten digits scikit-learn ships inside its wheel (``load_digits``; the
  ``featcli[train]`` extra), values 0..16 scaled to 0..1, input ``1x8x8``, classes ``0``..``9``.
- ``orientation``: generated, deterministic from a seed: stripes and edges at four orientations
  (``vertical``, ``horizontal``, ``diagonal_up`` ``/``, ``diagonal_down`` ``\\``), each with a random
  angle jitter, period or position, sharpness, contrast, brightness and noise; input ``1x16x16``.
- A folder ``DATA/CLASS/*.png``: every file loaded with featcli's image loader and the run's loading options,
  resized to one input size (``--size HxW``; default the first image's). Unreadable files are reported and
  skipped. A folder named like a built-in set is written ``./digits``.

Everything is held in memory as one ``(N, C, H, W)`` float32 tensor and one ``(N,)`` label tensor.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.errors import FeatcliError, ImageLoadError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from featcli.io.images import LoadOptions

__all__ = ["BUILTIN", "Dataset", "load_data", "orientation", "parse_size"]

#: The data sets that need no files, with a line each for help texts.
BUILTIN = {"digits": "scikit-learn's 1,797 8x8 handwritten digits (10 classes)",
           "orientation": "generated stripes and edges at 4 orientations (1x16x16)"}
ORIENTATIONS = ("vertical", "horizontal", "diagonal_up", "diagonal_down")
#: The angle of each class's intensity gradient: vertical stripes vary along x (0 degrees), ...
_ANGLES = (0.0, 90.0, 45.0, 135.0)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels in memory, with what a model file records about them."""

    name: str  #: ``digits``, ``orientation`` or the folder as given
    x: torch.Tensor = field(repr=False)  #: (N, C, H, W) float32
    y: torch.Tensor = field(repr=False)  #: (N,) int64 class indices
    classes: tuple[str, ...]
    loading: dict[str, Any]  #: how an image file becomes an input like these (recorded in the model)
    skipped: tuple[str, ...] = ()  #: files that could not be read, each ``path: reason``

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def parse_size(text: str) -> tuple[int, int]:
    """``--size HxW`` (or ``N``) -> ``(H, W)``.

    >>> parse_size("32x24"), parse_size("28")
    ((32, 24), (28, 28))
    """
    parts = text.lower().replace("×", "x").split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims *= 2
    if len(dims) != 2 or min(dims) < 1 or max(dims) > 4096:
        raise UsageError(f"--size {text!r}: expected HxW such as 32x32 (1 to 4096 each)")
    return dims[0], dims[1]


def load_data(spec: str, *, size: tuple[int, int] | None = None, load: LoadOptions | None = None,
              seed: int = 0) -> Dataset:
    """The data set ``spec`` names: a built-in name (:data:`BUILTIN`) or a class-per-sub-folder folder.

    Raises:
        UsageError: not a built-in name nor a folder; options that do not apply to a built-in set.
        FeatcliError: scikit-learn is missing (``digits``); a folder without two classes of readable images.
    """
    if spec in BUILTIN:  # a folder of that name is ./digits
        if size is not None:
            raise UsageError(f"--size applies to image folders; {spec} has a fixed size")
        return normalized(digits() if spec == "digits" else orientation(seed=seed), load)
    if not os.path.isdir(spec):
        known = ", ".join(BUILTIN)
        raise UsageError(f"DATA {spec!r} is neither a folder of class sub-folders nor a built-in set ({known})")
    return normalized(folder(spec, size=size, load=load), load)


def normalized(data: Dataset, load: LoadOptions | None) -> Dataset:
    """``data`` with ``load.normalize`` applied to its images, and the loading options a model file records
    completed: the normalisation and the ``--resize`` an image of another size gets (a built-in set's too)."""
    from featcli.enums import Resize

    loading = {**data.loading, "resize": (load.resize if load else Resize.CROP).value}
    if load is None or load.normalize is None:
        return replace(data, loading=loading)
    return replace(data, x=load.normalize.apply(data.x), loading={**loading, "normalize": load.normalize.record()})


def digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits, values 0..16 scaled to 0..1."""
    import torch

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise FeatcliError("the digits data set needs scikit-learn: pip install 'featcli[train]'") from None
    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    return Dataset("digits", x, y, tuple(str(i) for i in range(10)),
                   {"channels": "gray", "scale": "1"})


def orientation(*, seed: int = 0, per_class: int = 600, side: int = 16) -> Dataset:
    """Stripes and edges at four orientations (see the module docstring), ``4 * per_class`` images."""
    import numpy as np
    import torch

    x, y = orientation_arrays(seed=seed, per_class=per_class, side=side)
    return Dataset("orientation", torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), ORIENTATIONS,
                   {"channels": "gray", "scale": "1"})


def orientation_arrays(*, seed: int = 0, per_class: int = 600, side: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 1, side, side)`` float32 images in 0..1 and ``(N,)`` labels, the same for the same seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = per_class * len(ORIENTATIONS)
    y = rng.permutation(np.repeat(np.arange(len(ORIENTATIONS)), per_class))
    theta = np.deg2rad(np.asarray(_ANGLES)[y] + rng.uniform(-10.0, 10.0, n))
    c = (side - 1) / 2
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64) - c
    u = xx[None] * np.cos(theta)[:, None, None] + yy[None] * np.sin(theta)[:, None, None]
    stripes = rng.random(n) < 0.5
    period = rng.uniform(3.0, 8.0, n)[:, None, None]
    phase = rng.uniform(0.0, 2 * math.pi, n)[:, None, None]
    wave = np.sin(2 * math.pi * u / period + phase)
    square = (rng.random(n) < 0.5)[:, None, None]
    wave = np.where(square, np.sign(wave), wave)
    offset = rng.uniform(-side / 4, side / 4, n)[:, None, None]
    width = rng.uniform(0.3, 2.0, n)[:, None, None]
    polarity = np.where(rng.random(n) < 0.5, -1.0, 1.0)[:, None, None]
    edge = polarity * np.tanh((u - offset) / width)
    profile = np.where(stripes[:, None, None], wave, edge)
    contrast = rng.uniform(0.15, 0.45, n)[:, None, None]
    mean = rng.uniform(0.3, 0.7, n)[:, None, None]
    noise = rng.normal(0.0, 1.0, (n, side, side)) * rng.uniform(0.02, 0.1, n)[:, None, None]
    img = np.clip(mean + contrast * profile + noise, 0.0, 1.0).astype(np.float32)
    return img[:, None], y


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def folder(root: str, *, size: tuple[int, int] | None = None, load: LoadOptions | None = None) -> Dataset:
    """Every readable image of ``root/CLASS/``; classes are the sub-folders' names, sorted.

    Raises:
        FeatcliError: fewer than two classes with readable images.
    """
    import dataclasses

    import numpy as np
    import torch

    from featcli.engine.numpy_backend import HWC
    from featcli.enums import Channels
    from featcli.io.images import LoadOptions, load_image, probe

    base = Path(root)
    classes = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    listed = [(i, p) for i, name in enumerate(classes) for p in _files(base / name)]
    opts = load or LoadOptions()
    if opts.channels is None:  # one channel count for every image: a folder may mix gray and colour ones
        opts = dataclasses.replace(opts, channels=Channels.RGB)
    skipped: list[str] = []
    if size is None:  # the first readable image's size
        for _, p in listed:
            try:
                shape = probe(p, opts).tensor_shape
            except ImageLoadError:
                continue
            size = (shape[2], shape[3])
            break
    if size is None:
        raise FeatcliError(f"no readable image in {root}/CLASS/ folders (found {len(classes)} sub-folders)")
    opts = dataclasses.replace(opts, size=size)
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    for label, p in listed:
        try:
            img = load_image(p, opts)
        except ImageLoadError as exc:
            skipped.append(str(exc))
            continue
        arrays.append(HWC(img.array, img.value_max, opts.scale).planes()[0])  # (C, H, W), the run's scaling
        labels.append(label)
    used = sorted(set(labels))
    if len(used) < 2:
        raise FeatcliError(f"{root}: training needs at least two class sub-folders with readable images "
                           f"(found {', '.join(classes[i] for i in used) or 'none'})")
    if len(used) < len(classes):  # an empty class would never be predicted: drop it, say so
        empty = [c for i, c in enumerate(classes) if i not in used]
        skipped.extend(f"{root}/{c}/: no readable image, class left out" for c in empty)
        remap = {old: new for new, old in enumerate(used)}
        labels = [remap[v] for v in labels]
        classes = [classes[i] for i in used]
    x = torch.from_numpy(np.stack(arrays))
    y = torch.as_tensor(labels, dtype=torch.int64)
    loading = {"channels": (opts.channels or Channels.RGB).value, "alpha": opts.alpha.value,
               "background": opts.background,
               "scale": opts.scale.value}
    return Dataset(root, x, y, tuple(classes), loading, tuple(skipped))
