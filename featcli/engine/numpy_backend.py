"""The NumPy backend: a torch-free engine for the common single-image runs on the CPU.

Importing torch costs more than all the work of a Sobel run on a 12.5 MP photo, so stacks made only of
fixed 2-D kernels (library, parametric, inline, text/npy/toml files), pointwise activations, unpadded
max/avg pooling and global pooling run here with NumPy instead, in the same (N, C, H, W) float32 layout.
Results equal the torch backend to float32 rounding (tests assert ``atol=1e-5``). What it cannot run is
declared below with the reason; ``--engine torch`` forces torch.

Two shortcuts keep it fast without changing the maths: in ``sum`` mode every input channel has the
same kernel, so channels are summed once before correlating (``sum_c k*x_c = k*sum_c x_c``), and
zero taps are skipped (:func:`featcli.kernels.correlate.correlate`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from featcli.engine import numpy_ops as M
from featcli.engine.backend import OpTable, SampleStats, StageFn
from featcli.engine.plan import ConvKernels, PlannedStage
from featcli.enums import KernelMode, PaddingMode, Scale
from featcli.kernels.correlate import correlate, correlate_band, in_bands
from featcli.stages import params as P
from featcli.stages.registry import Op

_NP_PAD = {PaddingMode.ZEROS: "constant", PaddingMode.REFLECT: "reflect", PaddingMode.REPLICATE: "edge",
           PaddingMode.CIRCULAR: "wrap"}
LUMA = np.array([0.299, 0.587, 0.114], np.float32)

#: The statistics of the last output a banded stage measured on this thread (see :func:`_measured`).
_LAST = threading.local()

OPS: OpTable[None] = OpTable("numpy")
OPS.unsupported("learned layers run on torch", Op.CONVT, Op.LINEAR)
OPS.unsupported("per-image statistics of batch norm run on torch", Op.BN)
OPS.unsupported("a reshape for the torch layers after it", Op.FLATTEN)
OPS.unsupported("adaptive windows of unequal sizes run on torch", Op.ADAPTIVEAVG, Op.ADAPTIVEMAX)
OPS.unsupported("branches (saved tensors, add, mul, cat) run on torch", Op.SAVE, Op.ADD, Op.MUL, Op.CAT)


class HWC:
    """The decoded image, not yet turned into float planes (``(1, C, H, W)`` once it is).

    Big fresh allocations are slow (page faults: 100 MB costs 30-300 ms on our VMs), so the first conv
    stage reads the uint8 HWC array directly and writes its source plane straight into the padded
    buffer; the (1, C, H, W) float copy of the image is only made when a stage needs it.
    """

    def __init__(self, array: np.ndarray, value_max: float, scale: Scale) -> None:
        self.array, self.value_max, self.scale = array, value_max, scale
        self._divisor, self._multiplier = scale.steps(value_max)  # the one pixel-scaling rule

    @property
    def shape(self) -> tuple[int, int, int, int]:
        h, w, c = self.array.shape
        return (1, c, h, w)

    def rows(self, a: int, b: int) -> HWC:
        """Image rows ``a:b`` (a view, scaled alike)."""
        return HWC(self.array[a:b], self.value_max, self.scale)

    def scaled_into(self, values: np.ndarray, out: np.ndarray) -> None:
        """``out[...] = values / value_max * scale`` in float32 for pixel values of this image (or sums of
        them), as the torch path computes it (:meth:`featcli.enums.Scale.steps`)."""
        if self._divisor is None:
            np.copyto(out, values, casting="unsafe")
        else:
            np.divide(values, np.float32(self._divisor), out=out, dtype=np.float32)
        if self._multiplier is not None:
            out *= np.float32(self._multiplier)

    def channel_into(self, c: int, out: np.ndarray) -> None:
        """``out[...]`` = channel ``c`` as tensor values (:meth:`scaled_into`)."""
        self.scaled_into(self.array[:, :, c], out)

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
        x.scaled_into(acc, out)
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


def _conv_when(stage: PlannedStage) -> str | None:
    p = stage.params
    assert isinstance(p, P.ConvSpec)
    ck = stage.kernels
    if ck is None or ck.learned is not None:
        return "learned or random weights run on torch"
    if p.stride != (1, 1) or p.dilation != (1, 1):
        return "stride and dilation run on torch"
    return None


def conv_planes(x: HWC | np.ndarray, ck: ConvKernels, padding: tuple[int, int, int, int],
                pm: PaddingMode) -> np.ndarray:
    """(1, C, H, W) (or the HWC image) -> (1, n_src * n_kernels, H', W'): each kernel on each source plane.

    Zero (or no) padding runs in cache-sized row bands on threads (:func:`in_bands`): each band's source
    rows are summed, scaled and padded into a small buffer and correlated there, and the band's statistics
    are taken while it is in cache. Every value is computed by the same float32 operations, in the same
    order, as the whole-plane path (the other padding modes), so the results are identical.
    """
    kernels = ck.kernels
    kh, kw = kernels[0].shape
    pt, pb, pl, pr = padding
    _, n_ch, h, w = x.shape
    out_h, out_w = h + pt + pb - kh + 1, w + pl + pr - kw + 1
    n_src = n_ch if ck.mode is KernelMode.DEPTHWISE else 1
    y = np.empty((1, n_src * len(kernels), out_h, out_w), np.float32)
    if pm is PaddingMode.ZEROS or not (pt or pb or pl or pr):
        scratch = threading.local()

        def band(r0: int, r1: int) -> tuple[np.ndarray, ...]:
            rows = r1 - r0 + kh - 1  # padded rows r0 .. r1 + kh - 2 hold image rows r0 - pt ...
            buf = getattr(scratch, "buf", None)
            if buf is None or buf.shape[0] < rows:
                buf = scratch.buf = np.zeros((rows, w + pl + pr), np.float32)
            buf = buf[:rows]
            a, b = max(0, r0 - pt), min(h, r0 - pt + rows)
            top = a - (r0 - pt)
            buf[:top] = 0
            buf[top + max(0, b - a):] = 0
            buf[:, :pl] = 0
            buf[:, pl + w:] = 0
            part = x.rows(a, b) if isinstance(x, HWC) else x[:, :, a:b]
            for c in range(n_src):
                if b > a:
                    _source(part, ck.mode, c, buf[top : top + b - a, pl : pl + w])
                for o, k in enumerate(kernels):
                    correlate_band(buf, k.weights, y[0, c * len(kernels) + o, r0:r1])
            return _band_stats(y[0, :, r0:r1])

        _measured(y, in_bands(out_h, out_w, band))
        return y
    buf = np.zeros((h + pt + pb, w + pl + pr), np.float32)
    inner = buf[pt : pt + h, pl : pl + w]
    for c in range(n_src):
        _source(x, ck.mode, c, inner)
        plane = np.pad(inner, ((pt, pb), (pl, pr)), mode=_NP_PAD[pm])  # type: ignore[call-overload]
        for o, k in enumerate(kernels):
            correlate(plane, k.weights, y[0, c * len(kernels) + o])
    return y


def _band_stats(band: np.ndarray) -> tuple[Any, ...]:
    """Per-map minimum and maximum, the float32 sum and the count of zeros of a (C, rows, W) band."""
    # count_nonzero(band == 0) counts what size - count_nonzero(band) does (NaN is not zero, -0.0 is), 10x faster
    return (band.min(axis=(1, 2)), band.max(axis=(1, 2)), band.sum(dtype=np.float32), np.count_nonzero(band == 0))


def _measured(y: np.ndarray, bands: list[tuple[np.ndarray, ...]]) -> None:
    """Remember ``y``'s statistics folded from its bands, for :meth:`NumpyBackend.stats` (same thread)."""
    if not bands or y.size == 0 or y.ndim != 4:
        _LAST.y = None
        return
    lo_c = np.minimum.reduce([b[0] for b in bands])
    hi_c = np.maximum.reduce([b[1] for b in bands])
    total = float(sum(float(b[2]) for b in bands))
    zeros = int(sum(int(b[3]) for b in bands))
    _LAST.y, _LAST.stats = y, SampleStats(float(lo_c.min()), float(hi_c.max()), total, int(y.size), zeros,
                                          list(zip(lo_c.tolist(), hi_c.tolist(), strict=True)))


@OPS.implements(Op.CONV, when=_conv_when)
def _conv(stage: PlannedStage, env: None) -> StageFn:
    ck, padding, pm = stage.kernels, stage.padding, stage.params.padding_mode
    assert ck is not None and padding is not None
    return lambda x: conv_planes(x, ck, padding, pm)


def _pool_when(stage: PlannedStage) -> str | None:
    p = stage.params
    assert isinstance(p, P.PoolSpec)
    if p.padding != (0, 0) or p.dilation != (1, 1) or p.ceil_mode:
        return "padding, dilation and ceil_mode in pooling run on torch"
    return None


def pool(x: np.ndarray, p: P.PoolSpec) -> np.ndarray:
    (kh, kw), (sh, sw) = p.kernel_size, p.stride
    oh = (x.shape[2] - kh) // sh + 1
    ow = (x.shape[3] - kw) // sw + 1
    # One elementwise pass per window offset over strided views: 20-40x faster than reducing a
    # (.., oh, kh, ow, kw) reshape over axes (3, 5), whose inner loops are kh or kw long.
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


@OPS.implements(Op.MAXPOOL, Op.AVGPOOL, when=_pool_when)
def _pool(stage: PlannedStage, env: None) -> StageFn:
    p = stage.params
    return lambda x: pool(planes(x), p)


def planes(x: HWC | np.ndarray) -> np.ndarray:
    """The (1, C, H, W) float32 array of the input (the HWC image is converted on first use)."""
    return x.planes() if isinstance(x, HWC) else x


def _elementwise(fn: Any) -> StageFn:
    return lambda x: fn(planes(x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    out: np.ndarray = (e / e.sum(axis=1, keepdims=True, dtype=np.float32)).astype(np.float32, copy=False)
    return out


def _magnitude_fn(x: np.ndarray) -> np.ndarray:
    n, _, h, w = x.shape
    out = np.empty((n, 1, h, w), np.float32)

    def band(r0: int, r1: int) -> tuple[np.ndarray, ...]:
        o = out[:, 0, r0:r1]
        np.einsum("nchw,nchw->nhw", x[:, :, r0:r1], x[:, :, r0:r1], out=o)
        np.sqrt(o, out=o)
        return _band_stats(out[0, :, r0:r1]) if n == 1 else ()

    stats = in_bands(h, w, band)
    _measured(out, stats if n == 1 else [])
    return out


@OPS.implements(Op.MAGNITUDE)
def _magnitude(stage: PlannedStage, env: None) -> StageFn:
    return _elementwise(_magnitude_fn)


@OPS.implements(Op.ABS)
def _abs(stage: PlannedStage, env: None) -> StageFn:
    return _elementwise(np.abs)


@OPS.implements(Op.RELU)
def _relu(stage: PlannedStage, env: None) -> StageFn:
    return _elementwise(lambda x: np.maximum(x, np.float32(0)))


@OPS.implements(Op.RELU6)
def _relu6(stage: PlannedStage, env: None) -> StageFn:
    return _elementwise(lambda x: np.clip(x, np.float32(0), np.float32(6)))


@OPS.implements(Op.LEAKYRELU)
def _leakyrelu(stage: PlannedStage, env: None) -> StageFn:
    slope = np.float32(stage.params.negative_slope)
    return _elementwise(lambda x: np.where(x >= 0, x, x * slope))


def _prelu_when(stage: PlannedStage) -> str | None:
    return "slopes from a checkpoint are read with torch" if stage.slopes_ref else None


@OPS.implements(Op.PRELU, when=_prelu_when)
def _prelu(stage: PlannedStage, env: None) -> StageFn:
    n = stage.row.config["n"]
    slopes = np.full((1, n, 1, 1) if len(stage.row.in_shape) == 4 else (1, n), stage.params.init, np.float32)
    return _elementwise(lambda x: np.where(x >= 0, x, x * slopes))


@OPS.implements(Op.SIGMOID)
def _sigmoid_op(stage: PlannedStage, env: None) -> StageFn:
    return _elementwise(M.sigmoid)


@OPS.implements(Op.TANH)
def _tanh(stage: PlannedStage, env: None) -> StageFn:
    return _elementwise(np.tanh)


@OPS.implements(Op.GELU, Op.SILU, Op.HARDSWISH, Op.HARDSIGMOID, Op.UPSAMPLE)
def _more(stage: PlannedStage, env: None) -> StageFn:
    p, out = stage.params, stage.row.out_shape[2:]
    return _elementwise({Op.SILU: M.silu, Op.HARDSWISH: M.hardswish, Op.HARDSIGMOID: M.hardsigmoid,
                         Op.GELU: lambda x: M.gelu(x, p.approximate.value == "tanh"),
                         Op.UPSAMPLE: lambda x: M.upsample(x, p, out)}[stage.op])


@OPS.implements(Op.GROUPNORM, Op.LAYERNORM, when=lambda s: "trained weights run on torch" if s.state else None)
def _norm(stage: PlannedStage, env: None) -> StageFn:
    p, groups = stage.params, stage.row.config.get("g", 1)
    if stage.op is Op.LAYERNORM:
        return _elementwise(lambda x: M.layer_norm(x, p.eps))
    return _elementwise(lambda x: M.group_norm(x, groups, p.eps))


@OPS.implements(Op.SOFTMAX)
def _softmax_op(stage: PlannedStage, env: None) -> StageFn:
    return _elementwise(_softmax)


@OPS.implements(Op.DROPOUT)
def _dropout(stage: PlannedStage, env: None) -> StageFn:
    return planes


@OPS.implements(Op.GAP, Op.GMP)
def _global(stage: PlannedStage, env: None) -> StageFn:
    fn: Any = np.mean if stage.op is Op.GAP else np.max
    return _elementwise(lambda x: fn(x, axis=(2, 3), keepdims=True).astype(np.float32, copy=False))


class NumpyBackend:
    """Runs planned stages with NumPy on the CPU (see the module docstring)."""

    name = "numpy"
    ops = OPS

    def compile(self, stage: PlannedStage) -> StageFn:
        return self.ops.compile(stage, None)

    def context(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def sync(self) -> None:
        pass

    @staticmethod
    def shape(y: np.ndarray) -> tuple[int, ...]:
        return tuple(int(d) for d in y.shape)

    @staticmethod
    def sample(y: np.ndarray, i: int) -> np.ndarray:
        return y[i : i + 1]

    @staticmethod
    def empty(shape: Sequence[int]) -> np.ndarray:
        return np.empty(tuple(shape), np.float32)

    @staticmethod
    def stats(y: np.ndarray, ranges: bool = True, extremes: bool = True) -> list[SampleStats]:
        """Statistics of a one-image output, with per-map ranges (they spare the grid renderer a pass).

        Per-map ranges come from the same two reductions as the global ones. The sum uses NumPy's pairwise
        float32 summation (no float64 copy).
        """
        if getattr(_LAST, "y", None) is y:  # measured band by band as it was computed
            known: SampleStats = _LAST.stats
            _LAST.y = None
            return [known if ranges else SampleStats(known.lo, known.hi, known.total, known.count, known.zeros)]
        per_map = None
        if y.ndim == 4:
            lo_c, hi_c = y[0].min(axis=(1, 2)), y[0].max(axis=(1, 2))
            per_map = list(zip(lo_c.tolist(), hi_c.tolist(), strict=True))
            lo, hi = float(lo_c.min()), float(hi_c.max())
        else:
            lo, hi = float(y.min()), float(y.max())
        return [SampleStats(lo, hi, float(y.sum(dtype=np.float32)), int(y.size), int(np.count_nonzero(y == 0)),
                            per_map)]
