"""The picture of a kernel (``featcli kernels show --png``): its weights, and its response on step edges
and on an impulse.

The responses are computed by featcli's one NumPy cross-correlation
(:func:`featcli.kernels.correlate.correlate`), on a plane padded the way a ``conv`` stage pads it, so the
figure shows exactly what a run computes. matplotlib is imported inside the functions (its object API,
never pyplot), so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import numpy as np
import numpy.typing as npt

from featcli.errors import OutputError
from featcli.io.outputs import atomic_write
from featcli.kernels.correlate import correlate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from featcli.kernels import Kernel

#: At most this many kernels get a row of the figure; the title says how many there were.
MAX_ROWS = 8


def kernel_response(
    kernel: Kernel, plane: npt.ArrayLike, border: Literal["edge", "constant"]
) -> npt.NDArray[np.float32]:
    """Same-size cross-correlation of ``plane`` ``(H, W)`` with ``kernel``, anchored at ``(kh//2, kw//2)``.

    The plane is padded by ``kh - 1`` rows and ``kw - 1`` columns around that anchor (``border``: repeat the
    edge pixels, or zeros), then correlated in ``valid`` mode, as ``conv2d`` and ``cv2.filter2D`` do it.

    Returns:
        ``(H, W)`` float32.

    >>> from featcli.kernels import Kernel
    >>> k = Kernel("d", ((-1.0, 0.0, 1.0),))
    >>> kernel_response(k, [[0, 0, 1, 1]], "edge").tolist()
    [[0.0, 1.0, 1.0, 0.0]]
    """
    image = np.asarray(plane, dtype=np.float32)
    kh, kw = kernel.shape
    ay, ax = kh // 2, kw // 2
    padded = np.pad(image, ((ay, kh - 1 - ay), (ax, kw - 1 - ax)), mode=border)
    out = np.empty(image.shape, np.float32)
    correlate(padded, kernel.weights, out)
    return out


def kernel_figure(kernels: Sequence[Kernel]) -> Figure:
    """One row per kernel (the first :data:`MAX_ROWS`): its weights, its response on a bright square on
    dark (step edges, edge-padded) and on an impulse (zero-padded: the kernel turned 180 degrees).

    Each panel has a zero-centred ``RdBu_r`` scale and a colorbar; weights are printed on kernels up to
    9x9.
    """
    from matplotlib.figure import Figure

    shown = kernels[:MAX_ROWS]
    fig = Figure(figsize=(10.5, 3.4 * len(shown)), layout="constrained")
    axes = fig.subplots(len(shown), 3, squeeze=False)
    for row, k in zip(axes, shown, strict=True):
        w = np.array(k.weights, dtype=np.float64)
        side = max(24, 2 * max(k.shape) + 9)
        square = np.zeros((side, side))
        q = side // 4
        square[q : side - q, q : side - q] = 1.0
        small = max(k.shape) + 4 | 1
        impulse = np.zeros((small, small))
        impulse[small // 2, small // 2] = 1.0
        panels: list[tuple[npt.NDArray[Any], str]] = [
            (w, f"{k.name} {k.shape[0]}x{k.shape[1]}, sum {_fmt(k.sum + 0.0)}"),
            (kernel_response(k, square, "edge"), "on step edges (bright square on dark)"),
            (kernel_response(k, impulse, "constant"), "on an impulse (the kernel, turned 180 degrees)"),
        ]
        for ax, (data, title) in zip(row, panels, strict=True):
            lim = float(np.abs(data).max()) or 1.0
            im = ax.imshow(data, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8)
        if max(k.shape) <= 9:
            lim = float(np.abs(w).max()) or 1.0
            for (i, j), v in np.ndenumerate(w):
                row[0].text(j, i, _fmt(float(v)), ha="center", va="center", fontsize=8,
                            color="white" if abs(v) > 0.6 * lim else "black")  # fmt: skip
    if len(kernels) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(kernels)} kernels")
    return fig


def write_kernel_figure(
    kernels: Sequence[Kernel],
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    inputs: Iterable[str] = (),
) -> Path:
    """Draw :func:`kernel_figure` and write it as a PNG (100 dpi) atomically; return the path.

    Raises:
        OutputError: not a ``.png`` name, exists without ``force``, is one of ``inputs``, cannot be written.
    """
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise OutputError(f"expected a .png file name, got {p.suffix or 'no extension'!r}", path=str(p))
    fig = kernel_figure(kernels)

    def write(fh: BinaryIO) -> None:
        fig.savefig(fh, format="png", dpi=100)

    return atomic_write(p, write, force=force, inputs=inputs)


def _fmt(v: float) -> str:
    """A weight as printed by ``featcli kernels``: integers without a decimal point, else 4 digits.

    >>> _fmt(-2.0), _fmt(0.1234567)
    ('-2', '0.1235')
    """
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}"
