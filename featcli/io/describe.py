"""``featcli info`` core: what an image is and what tensor it becomes. No torch needed."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from featcli.io.images import LoadedImage, LoadOptions, load_image

_ORIENTATIONS = {
    1: "normal",
    2: "mirrored horizontally",
    3: "rotated 180",
    4: "mirrored vertically",
    5: "mirrored horizontally, rotated 270 CW",
    6: "rotated 90 CW",
    7: "mirrored horizontally, rotated 90 CW",
    8: "rotated 270 CW",
}
_ROWS_PER_BLOCK = 256  # bounds the float64 temporaries of the statistics on huge images


@dataclass(frozen=True)
class ChannelStats:
    """Statistics of one tensor channel (values as the tensor holds them, i.e. after --scale)."""

    name: str
    min: float
    max: float
    mean: float
    std: float


def channel_stats(image: LoadedImage, factor: float) -> list[ChannelStats]:
    """Per-channel min/max/mean/std of ``array * factor``, in row blocks (bounded memory)."""
    import numpy as np

    a = image.array
    h, _, c = a.shape
    lo = np.full(c, np.inf)
    hi = np.full(c, -np.inf)
    s1 = np.zeros(c)
    s2 = np.zeros(c)
    for r in range(0, h, _ROWS_PER_BLOCK):
        block = a[r : r + _ROWS_PER_BLOCK].reshape(-1, c).astype(np.float64)
        lo = np.minimum(lo, block.min(axis=0))
        hi = np.maximum(hi, block.max(axis=0))
        s1 += block.sum(axis=0)
        s2 += np.square(block).sum(axis=0)
    n = a.shape[0] * a.shape[1]
    mean = s1 / n
    var = np.maximum(s2 / n - mean**2, 0.0)
    return [
        ChannelStats(name, float(lo[i] * factor), float(hi[i] * factor), float(mean[i] * factor),
                     float(math.sqrt(var[i]) * factor))
        for i, name in enumerate(image.channel_names)
    ]


def describe(path: str | os.PathLike[str], opts: LoadOptions, pixels: int = 0) -> dict[str, Any]:
    """Everything ``featcli info`` reports about one image, as a JSON-ready dict (keys in README)."""
    image = load_image(path, opts)
    hdr = image.header
    factor = opts.scale.factor / image.value_max
    stats = channel_stats(image, factor)
    w, h = hdr.out_size
    out: dict[str, Any] = {
        "path": hdr.path,
        "format": hdr.format,
        "mode": hdr.mode,
        "width": hdr.size[0],
        "height": hdr.size[1],
        "orientation": hdr.orientation,
        "orientation_text": _ORIENTATIONS.get(hdr.orientation, "normal"),
        "frames": hdr.n_frames,  # None (null): the frame table is unreadable; the frame loaded decoded whole
        "frame": hdr.frame,
        "array": {"shape": list(image.array.shape), "dtype": str(image.array.dtype), "layout": "HWC"},
        "tensor": {"shape": [1, hdr.channels, h, w], "dtype": "float32", "layout": "NCHW",
                   "scale": f"0..{opts.scale.value}"},
        "channels": [{"name": s.name, "min": s.min, "max": s.max, "mean": s.mean, "std": s.std} for s in stats],
    }
    if pixels:
        block = image.array[:pixels, :pixels]
        out["pixels"] = {name: block[:, :, i].tolist() for i, name in enumerate(image.channel_names)}
    return out
