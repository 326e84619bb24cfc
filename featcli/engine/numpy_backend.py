"""The NumPy engine: a torch-free path for the common single-image runs on the CPU.

Importing torch costs more than a second (1.2-1.5 s on our 2-core machines), more than all the work
of a Sobel run on a 12.5 MP photo. Stacks made only of fixed 2-D kernels (library, parametric, inline,
text/npy/toml files), magnitude, abs, relu, sigmoid, tanh, unpadded max/avg pooling and global pooling
run here with NumPy instead, in the same (N, C, H, W) float32 layout. Results equal the torch path to
float32 rounding (tests assert ``atol=1e-5``, relative to values of order 1); everything else (learned
or random weights, convt, bn, linear, padding in pooling, ceil_mode, stride/dilation in conv, GPUs)
runs on torch. ``--engine torch`` forces torch.

Two shortcuts keep it fast without changing the maths: in ``sum`` mode every input channel has the
same kernel, so channels are summed once before correlating (``sum_c k*x_c = k*sum_c x_c``), and
zero taps are skipped (Sobel has 6 of 9 non-zero).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import FeatcliError
from featcli.shape.axis import conv_padding
from featcli.stages import params as spec
from featcli.stages.grammar import SOLVE
from featcli.stages.registry import Op
from featcli.stages.spec import Stage

if TYPE_CHECKING:
    from featcli.kernels import Kernel

_NP_PAD = {PaddingMode.ZEROS: "constant", PaddingMode.REFLECT: "reflect", PaddingMode.REPLICATE: "edge",
           PaddingMode.CIRCULAR: "wrap"}
_SIMPLE = {Op.MAGNITUDE, Op.ABS, Op.RELU, Op.SIGMOID, Op.TANH, Op.GAP, Op.GMP, Op.DROPOUT}
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _kernels(p: spec.ConvSpec, kernels_dir: str | None) -> list[Kernel] | None:
    from featcli.kernels import stage_kernels

    try:
        got = stage_kernels(p.w, kernels_dir, False)
    except FeatcliError:
        return None  # let the torch path report it, with its own message
    return got if isinstance(got, list) else None


def supports(stack: Sequence[Stage], kernels_dir: str | None = None) -> bool:
    """Whether every stage of ``stack`` can run on the NumPy engine."""
    for st in stack:
        p = st.params
        if st.op is Op.CONV:
            assert isinstance(p, spec.ConvSpec)
            if not p.w or p.s != (1, 1) or p.d != (1, 1) or p.p == SOLVE or _kernels(p, kernels_dir) is None:
                return False
        elif st.op in (Op.MAXPOOL, Op.AVGPOOL):
            assert isinstance(p, spec.PoolSpec)
            if p.p != (0, 0) or p.d != (1, 1) or p.ceil:
                return False
        elif st.op not in _SIMPLE:
            return False
    return True


class HWC:
    """The decoded image, not yet turned into float planes (``(1, C, H, W)`` once it is).

    Big fresh allocations are slow (page faults: 100 MB costs 30-300 ms on our VMs), so the first conv
    stage reads the uint8 HWC array directly and writes its source plane straight into the padded
    buffer; the (1, C, H, W) float copy of the image is only made when a stage needs it.
    """

    def __init__(self, array: np.ndarray, value_max: float, scale: float) -> None:
        self.array, self.value_max, self.scale = array, value_max, scale

    @property
    def shape(self) -> tuple[int, int, int, int]:
        h, w, c = self.array.shape
        return (1, c, h, w)

    def channel_into(self, c: int, out: np.ndarray) -> None:
        """``out[...] = array[:, :, c] / value_max * scale`` in float32, as the torch path computes it."""
        np.divide(self.array[:, :, c], np.float32(self.value_max), out=out, dtype=np.float32)
        if self.scale != 1.0:
            out *= np.float32(self.scale)

    def planes(self) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        for c in range(self.shape[1]):
            self.channel_into(c, out[0, c])
        return out


def _source(x: HWC | np.ndarray, mode: KernelMode, c: int, out: np.ndarray) -> None:
    """Write the plane a kernel correlates with into ``out`` (H, W): channel c, their sum, or luma."""
    n_ch = x.shape[1]
    if mode is KernelMode.DEPTHWISE or n_ch == 1:
        if isinstance(x, HWC):
            x.channel_into(c, out)
        else:
            out[...] = x[0, c]
        return
    if mode is KernelMode.SUM and isinstance(x, HWC) and x.array.dtype == np.uint8 and n_ch <= 257:
        # Sum the bytes exactly in uint16, then scale once: one float pass instead of 2C.
        acc = x.array[:, :, 0].astype(np.uint16)
        for ch in range(1, n_ch):
            acc += x.array[:, :, ch]
        np.divide(acc, np.float32(x.value_max), out=out, dtype=np.float32)
        if x.scale != 1.0:
            out *= np.float32(x.scale)
        return
    if mode is KernelMode.GRAY:
        weights = LUMA if n_ch in (3, 4) else np.full(n_ch, 1 / n_ch, np.float32)
        chans = range(3) if n_ch in (3, 4) else range(n_ch)
    else:  # sum mode: the same kernel on every channel, so sum the channels once
        weights, chans = np.ones(n_ch, np.float32), range(n_ch)
    tmp = np.empty_like(out)
    for i, ch in enumerate(chans):
        dst = out if i == 0 else tmp
        if isinstance(x, HWC):
            x.channel_into(ch, dst)
        else:
            dst[...] = x[0, ch]
        if weights[i] != 1:
            dst *= weights[i]
        if i:
            out += tmp


def _correlate(plane: np.ndarray, weights: Sequence[Sequence[float]], out: np.ndarray) -> None:
    """Valid cross-correlation of one padded (H, W) plane with one kernel into ``out``, in row bands.

    NumPy releases the GIL inside its loops, so bands run on threads in parallel; each output value
    is computed exactly as without bands.
    """
    out_h = out.shape[0]
    workers = min(os.cpu_count() or 1, 8, max(1, out.size // 1_000_000))
    if workers == 1:
        _correlate_band(plane, weights, out)
        return
    kh = len(weights)
    edges = [out_h * i // workers for i in range(workers + 1)]

    def band(i: int) -> None:
        r0, r1 = edges[i], edges[i + 1]
        _correlate_band(plane[r0 : r1 + kh - 1], weights, out[r0:r1])

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(band, range(workers)))


def _correlate_band(plane: np.ndarray, weights: Sequence[Sequence[float]], acc: np.ndarray) -> None:
    out_h, out_w = acc.shape
    tmp: np.ndarray | None = None
    first = True
    for i, row in enumerate(weights):
        for j, w in enumerate(row):
            if w == 0:
                continue
            view = plane[i : i + out_h, j : j + out_w]
            if first:
                np.multiply(view, np.float32(w), out=acc)
                first = False
            elif w == 1:
                acc += view
            elif w == -1:
                acc -= view
            else:
                tmp = np.empty_like(acc) if tmp is None else tmp
                np.multiply(view, np.float32(w), out=tmp)
                acc += tmp
    if first:  # an all-zero kernel
        acc.fill(0)


def _conv(x: HWC | np.ndarray, p: spec.ConvSpec, kernels: list[Kernel]) -> np.ndarray:
    kh, kw = kernels[0].shape
    pt, pb, pl, pr = conv_padding(p.p, (kh, kw), p.d)
    _, n_ch, h, w = x.shape
    out_h, out_w = h + pt + pb - kh + 1, w + pl + pr - kw + 1
    n_src = n_ch if p.mode is KernelMode.DEPTHWISE else 1
    y = np.empty((1, n_src * len(kernels), out_h, out_w), np.float32)
    # np.zeros is calloc: the zero border costs nothing, the interior is written once.
    buf = np.zeros((h + pt + pb, w + pl + pr), np.float32)
    inner = buf[pt : pt + h, pl : pl + w]
    for c in range(n_src):
        _source(x, p.mode, c, inner)
        plane = buf
        if p.pm is not PaddingMode.ZEROS and (pt or pb or pl or pr):
            plane = np.pad(inner, ((pt, pb), (pl, pr)), mode=_NP_PAD[p.pm])  # type: ignore[call-overload]
        for o, k in enumerate(kernels):
            _correlate(plane, k.weights, y[0, c * len(kernels) + o])
    return y


def _pool(x: np.ndarray, p: spec.PoolSpec) -> np.ndarray:
    (kh, kw), (sh, sw) = p.k, p.stride
    oh = (x.shape[2] - kh) // sh + 1
    ow = (x.shape[3] - kw) // sw + 1
    if (kh, kw) == (sh, sw):  # non-overlapping windows: one reshape, one reduction
        v = x[:, :, : oh * kh, : ow * kw].reshape(x.shape[0], x.shape[1], oh, kh, ow, kw)
        out: np.ndarray = v.max(axis=(3, 5)) if p.kind == "max" else v.mean(axis=(3, 5), dtype=np.float32)
        return out
    acc: np.ndarray | None = None
    for i in range(kh):
        for j in range(kw):
            view = x[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            if acc is None:
                acc = view.copy()
            elif p.kind == "max":
                np.maximum(acc, view, out=acc)
            else:
                acc += view
    assert acc is not None
    return acc if p.kind == "max" else acc / np.float32(kh * kw)


def apply_stage(x: HWC | np.ndarray, stage: Stage, kernels_dir: str | None = None,
                channel_names: Sequence[str] | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Run one supported stage on ``x`` (N, C, H, W) float32; returns output and channel labels.

    ``channel_names`` label depthwise outputs (``sobel_x[R]``), as the torch path does.
    """
    p = stage.params
    if isinstance(x, HWC) and stage.op is not Op.CONV:
        x = x.planes()
    if stage.op is Op.CONV:
        assert isinstance(p, spec.ConvSpec)
        kernels = _kernels(p, kernels_dir)
        assert kernels is not None
        y = _conv(x, p, kernels)
        names = [k.name for k in kernels]
        if p.mode is KernelMode.DEPTHWISE:
            from featcli.kernels import channel_names as default_names

            n_ch = x.shape[1]
            chans = list(channel_names) if channel_names and len(channel_names) == n_ch else default_names(n_ch)
            names = [f"{n}[{c}]" if n_ch > 1 else n for c in chans for n in names]
        return y, names
    assert isinstance(x, np.ndarray)
    if stage.op is Op.MAGNITUDE:
        out = np.einsum("nchw,nchw->nhw", x, x)[:, None]
        return np.sqrt(out, out=out), ["magnitude"]
    if stage.op is Op.ABS:
        return np.abs(x), None
    if stage.op is Op.RELU:
        return np.maximum(x, np.float32(0)), None
    if stage.op is Op.SIGMOID:
        with np.errstate(over="ignore"):  # exp overflow gives 1/inf = 0, the right limit
            return (1 / (1 + np.exp(-x))).astype(np.float32, copy=False), None
    if stage.op is Op.TANH:
        return np.tanh(x), None
    if stage.op is Op.DROPOUT:
        return x, None
    if stage.op in (Op.GAP, Op.GMP):
        fn: Any = np.mean if stage.op is Op.GAP else np.max
        return fn(x, axis=(2, 3), keepdims=True).astype(np.float32, copy=False), None
    assert isinstance(p, spec.PoolSpec)
    return _pool(x, p), None


def stats(y: np.ndarray) -> tuple[float, float, float, float, list[tuple[float, float]] | None]:
    """(min, max, mean, share of zeros, per-map (min, max) or None) of one image's stage output.

    Per-map ranges come from the same two reductions as the global ones, and spare the grid renderer
    its own pass over every map. The mean uses NumPy's pairwise float32 summation (no float64 copy).
    """
    if y.ndim == 4:
        lo_c, hi_c = y[0].min(axis=(1, 2)), y[0].max(axis=(1, 2))
        ranges = list(zip(lo_c.tolist(), hi_c.tolist(), strict=True))
        lo, hi = float(lo_c.min()), float(hi_c.max())
    else:
        ranges, lo, hi = None, float(y.min()), float(y.max())
    return lo, hi, float(y.mean(dtype=np.float32)), 1 - np.count_nonzero(y) / y.size, ranges
