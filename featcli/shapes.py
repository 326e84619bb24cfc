"""Torch-exact shape arithmetic for stage stacks, in pure integers (no torch, no numpy).

:func:`infer` walks a stack of :class:`featcli.spec.Stage` over an input shape ``(N, C, H, W)`` and
returns a :class:`ShapeReport`: per stage the output shape, parameter count, multiply-accumulates,
receptive field and jump, the formulas with the numbers substituted, and notes (dropped rows, ceil_mode
windows, solved paddings). Every stack torch refuses raises :class:`ShapeError` naming the stage.

>>> from featcli.spec import parse_stages
>>> infer((1, 3, 640, 640), parse_stages(["conv:out=5,k=3x5,s=1x2,p=2"])).output
(1, 5, 642, 320)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import KernelError, ShapeError, SpecError
from featcli.spec import (
    SOLVE,
    AdaptivePoolSpec,
    BatchNormSpec,
    ConvSpec,
    ConvTSpec,
    LinearSpec,
    Op,
    Pair,
    PoolSpec,
    Stage,
)

_AXES = ("H", "W")
_UNITS = ("rows", "columns")
_MAX_OPTIONS = 8


@dataclass(frozen=True)
class StageReport:
    """What one stage does to the shape.

    Attributes:
        index: 1-based position in the stack.
        spec: the stage as written.
        op: canonical op name.
        in_shape / out_shape: tensor shapes, ``(N, C, H, W)`` or ``(N, F)`` after ``flatten``.
        params: learned parameters (weights + bias; ``bn``: 2C).
        macs: multiply-accumulates for the whole batch (bias adds included, as torchinfo counts).
        rf: receptive field ``(H, W)`` of one output value, in input pixels.
        jump: distance ``(H, W)`` in input pixels between adjacent outputs (fractional after convt).
        formulas: one line per computed dimension, numbers substituted.
        notes: dropped rows/columns, ceil_mode windows, solver answers, caveats.
        config: resolved settings (defaults filled, paddings as ``[[top, bottom], [left, right]]``).
        resolved: the stage with every ``?`` replaced by the solved value (what ``run`` should build).
        solved: the values the solver picked (``{"p": [ph, pw]}``...), or None.
        options: per axis, the alternatives the solver considered, or None.
    """

    index: int
    spec: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int
    rf: tuple[int, int]
    jump: tuple[Fraction, Fraction]
    formulas: tuple[str, ...]
    notes: tuple[str, ...]
    config: dict[str, Any]
    resolved: Stage
    solved: dict[str, Any] | None = None
    options: dict[str, list[dict[str, int]]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object documented in ``docs/shape.md``."""
        return {
            "index": self.index, "spec": self.spec, "op": self.op,
            "in": list(self.in_shape), "out": list(self.out_shape),
            "params": self.params, "macs": self.macs,
            "rf": list(self.rf), "jump": [_num(j) for j in self.jump],
            "formula": list(self.formulas), "notes": list(self.notes),
            "config": self.config, "solved": self.solved, "options": self.options,
        }


@dataclass(frozen=True)
class ShapeReport:
    """The result of :func:`infer`: input, per-stage rows, output and totals."""

    input: tuple[int, ...]
    stages: tuple[StageReport, ...]
    output: tuple[int, ...]
    params: int
    macs: int
    source: str | None = None  #: the image file the input shape was read from, if any

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": list(self.input), "source": self.source,
            "stages": [s.to_dict() for s in self.stages],
            "output": list(self.output), "params": self.params, "macs": self.macs,
        }


def _num(x: Fraction) -> int | float:
    return int(x) if x.denominator == 1 else float(x)


def _ceil(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


# --- per-axis arithmetic ------------------------------------------------------------------------
def conv_axis(size: int, k: int, s: int, pl: int, pr: int, d: int) -> int:
    """torch Conv2d output size along one axis, or -1 when the dilated kernel exceeds the padded input."""
    num = size + pl + pr - d * (k - 1) - 1
    return -1 if num < 0 else num // s + 1


def pool_axis(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """torch's ``pooling_output_shape`` (may be < 1: torch then refuses)."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def convt_axis(size: int, k: int, s: int, p: int, op: int, d: int) -> int:
    """torch ConvTranspose2d output size along one axis (may be < 1: torch then refuses)."""
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def _pad_text(pl: int, pr: int) -> str:
    return f"2*{pl}" if pl == pr else f"{pl}+{pr}"


def _conv_formula(ax: str, size: int, k: int, s: int, pl: int, pr: int, d: int, out: int) -> str:
    return f"{ax}: floor(({size} + {_pad_text(pl, pr)} - {d}*({k}-1) - 1)/{s}) + 1 = {out}"


def _dropped_note(unit: str, size: int, k: int, s: int, pl: int, pr: int, d: int) -> str | None:
    num = size + pl + pr - d * (k - 1) - 1
    rem = num % s
    if num < 0 or rem == 0:
        return None
    where = "padding only" if rem <= pr else f"input {unit} {size - (rem - pr)}..{size - 1} never seen"
    return (f"{rem} {unit} dropped: (H + 2P - D(K-1) - 1) = {num} not divisible by S = {s} "
            f"(last {rem} of the padded input: {where})")


# --- the walk -----------------------------------------------------------------------------------
@dataclass
class _State:
    shape: tuple[int, ...]
    rf: list[Fraction]
    jump: list[Fraction]
    spatial: tuple[int, int]  # last (H, W) seen, for global receptive fields after flatten


@dataclass
class _Row:
    out: tuple[int, ...]
    params: int = 0
    macs: int = 0
    formulas: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    resolved: Any = None
    solved: dict[str, Any] | None = None
    options: dict[str, list[dict[str, int]]] | None = None


class _Refusal(Exception):
    """Internal: a reason torch would refuse; :func:`infer` adds the stage index and spec."""


def _need_4d(op: str, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise _Refusal(f"{op} needs a 4-D (N, C, H, W) input but gets {list(shape)} "
                       "(flatten/linear must come after the spatial stages)")
    return shape[0], shape[1], shape[2], shape[3]


_KERNEL_CACHE: dict[tuple[tuple[str, ...], int, KernelMode, str | None], tuple[int, int, int, int, int]] = {}


def _kernel_shape(refs: tuple[str, ...], c: int, mode: KernelMode,
                  kernels_dir: str | None) -> tuple[int, int, int, int, int]:
    key = (refs, c, mode, kernels_dir)
    hit = _KERNEL_CACHE.get(key)
    if hit is None:
        from featcli.kernels import conv_weight_shape  # lazily: only stacks with w= pay for it

        o, i, kh, kw, g = conv_weight_shape(list(refs), c, mode, kernels_dir)
        hit = _KERNEL_CACHE[key] = (int(o), int(i), int(kh), int(kw), int(g))
    return hit


def _solve(ax: int, target: int | None, default: int, fn: Any, candidates: Sequence[Any],
           label: Any, what: str) -> tuple[Any, list[dict[str, int]]]:
    """First candidate whose output ``fn(c)`` equals the target, and the options around it."""
    want = default if target is None else target
    found = [(c, out) for c in candidates if (out := fn(c)) >= 1]
    options = [{**label(c), "out": out} for c, out in found]
    for j, (c, out) in enumerate(found):
        if out == want:
            lo = max(0, j - _MAX_OPTIONS // 2)
            return c, options[lo:lo + _MAX_OPTIONS]
    near = sorted(options, key=lambda o: abs(o["out"] - want))[:_MAX_OPTIONS]
    near.sort(key=lambda o: tuple(v for k, v in o.items() if k != "out"))
    seen = ", ".join("/".join(f"{k}={v}" for k, v in o.items() if k != "out") + f" -> {o['out']}"
                     for o in near) or "none valid"
    names = "/".join(label(candidates[0])) if candidates else "value"
    why = "" if target is not None else f" (the default target: {what})"
    raise _Refusal(f"no {names} gives {_AXES[ax]} = {want}{why}; nearest: {seen}")


def _conv(st: _State, sp: ConvSpec, kernels_dir: str | None) -> _Row:
    n, c, h, w = _need_4d("conv", st.shape)
    conv_in = c
    if sp.w:
        out, in_pg, kh, kw, g = _kernel_shape(sp.w, c, sp.mode, kernels_dir)
        conv_in = 1 if sp.mode is KernelMode.GRAY else c
        if in_pg * g != conv_in:
            raise _Refusal(f"kernels give weight (out={out}, in={in_pg}, groups={g}) for {conv_in} input channels")
    else:
        assert sp.k is not None
        kh, kw = sp.k
        g = sp.g
        out = c if sp.out is None else sp.out
        if c % g:
            raise _Refusal(f"in channels {c} not divisible by groups g={g}")
        if out % g:
            raise _Refusal(f"out channels {out} not divisible by groups g={g}")
        in_pg = c // g
    row = _Row(out=())
    ks, ss, ds, sizes = (kh, kw), sp.s, sp.d, (h, w)
    if sp.p == "same":
        if ss != (1, 1):
            raise _Refusal(f"p=same is not supported for strided convolutions (s={ss[0]}x{ss[1]}), as in torch")
        pads = [(t // 2, t - t // 2) for t in (ds[0] * (ks[0] - 1), ds[1] * (ks[1] - 1))]
    elif sp.p == "valid":
        pads = [(0, 0), (0, 0)]
    elif sp.p == SOLVE:
        pads = []
        solved: list[int] = []
        row.options = {}
        for a in range(2):
            limit = sizes[a] - 1 if sp.pm is PaddingMode.REFLECT else sizes[a] if sp.pm is PaddingMode.CIRCULAR \
                else ds[a] * (ks[a] - 1) + ss[a] * (sp.target[a] if sp.target else sizes[a])
            p, opts = _solve(a, sp.target[a] if sp.target else None, -(-sizes[a] // ss[a]),
                             lambda p, a=a: conv_axis(sizes[a], ks[a], ss[a], p, p, ds[a]),
                             range(0, max(limit, 0) + 1), lambda p: {"p": p}, f"ceil({sizes[a]}/{ss[a]})")
            pads.append((p, p))
            solved.append(p)
            row.options[_AXES[a]] = opts
        row.solved = {"p": solved}
        row.notes.append(f"p=? -> p={solved[0]}x{solved[1]}")
    else:
        pads = [(sp.p[0], sp.p[0]), (sp.p[1], sp.p[1])]  # type: ignore[index]
    outs = []
    for a in range(2):
        pl, pr = pads[a]
        size = sizes[a]
        if sp.pm is PaddingMode.REFLECT and max(pl, pr) >= size:
            raise _Refusal(f"reflect padding {max(pl, pr)} must be smaller than the input {_AXES[a]} = {size}")
        if sp.pm is PaddingMode.CIRCULAR and max(pl, pr) > size:
            raise _Refusal(f"circular padding {max(pl, pr)} wraps around more than once ({_AXES[a]} = {size})")
        o = conv_axis(size, ks[a], ss[a], pl, pr, ds[a])
        if o < 1:
            eff = ds[a] * (ks[a] - 1) + 1
            raise _Refusal(f"kernel {eff} (dilated) is larger than the padded input {_AXES[a]} = {size + pl + pr}")
        outs.append(o)
        row.formulas.append(_conv_formula(_AXES[a], size, ks[a], ss[a], pl, pr, ds[a], o))
        note = _dropped_note(_UNITS[a], size, ks[a], ss[a], pl, pr, ds[a])
        if note:
            row.notes.append(f"{_AXES[a]}: {note}")
        st.rf[a] += (ds[a] * (ks[a] - 1)) * st.jump[a]
        st.jump[a] *= ss[a]
    if sp.mode is KernelMode.GRAY and sp.w and c != 1:
        row.notes.append(f"mode=gray: {c} channels -> 1 (luminance) before the kernels")
    row.out = (n, out, outs[0], outs[1])
    weights = out * in_pg * kh * kw
    row.params = weights + (out if sp.bias else 0)
    row.macs = n * outs[0] * outs[1] * row.params
    row.formulas.append(f"C: {out}" + (f" ({len(sp.w)} kernels, mode={sp.mode.value})" if sp.w else ""))
    row.config = {"in": conv_in, "out": out, "k": [kh, kw], "s": list(ss), "p": [list(pads[0]), list(pads[1])],
                  "d": list(ds), "g": g, "bias": sp.bias, "pm": sp.pm.value}
    if sp.w:
        row.config.update(w=list(sp.w), mode=sp.mode.value)
    row.resolved = dataclasses.replace(sp, p=(pads[0][0], pads[1][0])) if sp.p == SOLVE else sp
    return row


def _convt(st: _State, sp: ConvTSpec) -> _Row:
    n, c, h, w = _need_4d("convt", st.shape)
    g = sp.g
    out = c if sp.out is None else sp.out
    if c % g:
        raise _Refusal(f"in channels {c} not divisible by groups g={g}")
    if out % g:
        raise _Refusal(f"out channels {out} not divisible by groups g={g}")
    row = _Row(out=())
    sizes, ks, ss, ds = (h, w), sp.k, sp.s, sp.d
    ps: list[int] = [0, 0]
    ops: list[int] = [0, 0]
    if sp.p == SOLVE or sp.op == SOLVE:
        row.options, row.solved = {}, {}
        for a in range(2):
            p_range = range(ds[a] * (ks[a] - 1) + max(ss[a], ds[a]) + 1) if sp.p == SOLVE else [sp.p[a]]  # type: ignore[index]
            op_range = range(max(ss[a], ds[a])) if sp.op == SOLVE else [sp.op[a]]  # type: ignore[index]
            cands = [(p, q) for p in p_range for q in op_range if q < ss[a] or q < ds[a]]
            label = (lambda pq: {"p": pq[0], "op": pq[1]}) if sp.p == SOLVE and sp.op == SOLVE else \
                (lambda pq: {"p": pq[0]}) if sp.p == SOLVE else (lambda pq: {"op": pq[1]})
            (ps[a], ops[a]), opts = _solve(
                a, sp.target[a] if sp.target else None, sizes[a] * ss[a],
                lambda pq, a=a: convt_axis(sizes[a], ks[a], ss[a], pq[0], pq[1], ds[a]),
                cands, label, f"{sizes[a]}*{ss[a]}")
            row.options[_AXES[a]] = opts
        if sp.p == SOLVE:
            row.solved["p"] = list(ps)
        else:
            ps = list(sp.p)  # type: ignore[arg-type]
        if sp.op == SOLVE:
            row.solved["op"] = list(ops)
            valid = [f"{_AXES[a]}: {list(range(max(ss[a], ds[a])))}" for a in range(2)]
            row.notes.append(f"valid output_padding (op < s or op < d): {'; '.join(valid)}")
        else:
            ops = list(sp.op)  # type: ignore[arg-type]
        row.notes.append("solved: " + ", ".join(f"{k}={v[0]}x{v[1]}" for k, v in row.solved.items()))
    else:
        ps, ops = list(sp.p), list(sp.op)  # type: ignore[arg-type]
    if not all(ops[a] < ss[a] or ops[a] < ds[a] for a in range(2)):
        raise _Refusal(f"output_padding op={ops[0]}x{ops[1]} must be smaller than either stride "
                       f"s={ss[0]}x{ss[1]} or dilation d={ds[0]}x{ds[1]}")
    outs = []
    for a in range(2):
        o = convt_axis(sizes[a], ks[a], ss[a], ps[a], ops[a], ds[a])
        row.formulas.append(f"{_AXES[a]}: ({sizes[a]}-1)*{ss[a]} - 2*{ps[a]} + {ds[a]}*({ks[a]}-1) + {ops[a]} + 1"
                            f" = {o}")
        if o < 1:
            raise _Refusal(f"output {_AXES[a]} = {o} is too small (< 1)")
        outs.append(o)
        st.rf[a] += (ds[a] * (ks[a] - 1) // ss[a]) * st.jump[a]
        st.jump[a] /= ss[a]
    row.out = (n, out, outs[0], outs[1])
    weights = c * (out // g) * ks[0] * ks[1]
    row.params = weights + (out if sp.bias else 0)
    row.macs = n * h * w * weights + (n * out * outs[0] * outs[1] if sp.bias else 0)
    row.formulas.append(f"C: {out}")
    row.config = {"in": c, "out": out, "k": list(ks), "s": list(ss), "p": list(ps), "op": list(ops),
                  "d": list(ds), "g": g, "bias": sp.bias}
    row.resolved = dataclasses.replace(sp, p=(ps[0], ps[1]), op=(ops[0], ops[1])) if row.solved else sp
    return row


def _pool(st: _State, sp: PoolSpec, op: str) -> _Row:
    n, c, h, w = _need_4d(op, st.shape)
    row = _Row(out=())
    sizes, ks, ss, ds = (h, w), sp.k, sp.stride, sp.d
    if sp.p == SOLVE:
        ps = []
        row.options = {}
        for a in range(2):
            p, opts = _solve(a, sp.target[a] if sp.target else None, -(-sizes[a] // ss[a]),
                             lambda p, a=a: pool_axis(sizes[a], ks[a], ss[a], p, ds[a], sp.ceil),
                             range(ks[a] // 2 + 1), lambda p: {"p": p}, f"ceil({sizes[a]}/{ss[a]})")
            ps.append(p)
            row.options[_AXES[a]] = opts
        row.solved = {"p": ps}
        row.notes.append(f"p=? -> p={ps[0]}x{ps[1]}")
    else:
        ps = list(sp.p)  # type: ignore[arg-type]
    outs = []
    for a in range(2):
        size, k, s, p, d = sizes[a], ks[a], ss[a], ps[a], ds[a]
        if p > k // 2 or p > (d * (k - 1) + 1) // 2:
            raise _Refusal(f"padding {p} must be at most half the kernel size {k} (torch's pooling limit)")
        o = pool_axis(size, k, s, p, d, sp.ceil)
        num = size + 2 * p - d * (k - 1) - 1
        rounding = "ceil" if sp.ceil else "floor"
        dil = f"{d}*({k}-1)" if op == "maxpool" else f"({k}-1)"
        formula = f"{_AXES[a]}: {rounding}(({size} + 2*{p} - {dil} - 1)/{s}) + 1"
        if sp.ceil and num >= 0 and num % s and o == -(-num // s):
            formula += f" - 1 = {o}"
            row.notes.append(f"{_AXES[a]}: ceil_mode window {o + 1} would start at {o * s} >= {size} + {p} "
                             f"(outside the input and left padding), so torch drops it")
        else:
            formula += f" = {o}"
            if sp.ceil and num >= 0 and num % s:
                end = (o - 1) * s + d * (k - 1)
                row.notes.append(f"{_AXES[a]}: ceil_mode adds partial window {o} at {(o - 1) * s}..{end} of the "
                                 f"padded input (only {size + 2 * p} long)")
        row.formulas.append(formula)
        if o < 1:
            raise _Refusal(f"output {_AXES[a]} = {o} is too small (< 1): kernel {d * (k - 1) + 1} "
                           f"does not fit the padded input {size + 2 * p}")
        if not sp.ceil:
            note = _dropped_note(_UNITS[a], size, k, s, p, p, d)
            if note:
                row.notes.append(f"{_AXES[a]}: {note}")
        outs.append(o)
        st.rf[a] += (d * (k - 1)) * st.jump[a]
        st.jump[a] *= s
    row.out = (n, c, outs[0], outs[1])
    row.config = {"k": list(ks), "s": list(ss), "p": ps, "ceil": sp.ceil}
    if op == "maxpool":
        row.config["d"] = list(ds)
    else:
        row.config["cip"] = sp.cip
    row.resolved = dataclasses.replace(sp, p=(ps[0], ps[1])) if row.solved else sp
    return row


def _adaptive(st: _State, sp: AdaptivePoolSpec, op: str) -> _Row:
    n, c, h, w = _need_4d(op, st.shape)
    row = _Row(out=(n, c, sp.o[0], sp.o[1]), resolved=sp)
    for a, (size, o) in enumerate(zip((h, w), sp.o)):
        widths = {-(-(i + 1) * size // o) - (i * size // o) for i in range(o)} if o <= 4096 else {-(-size // o)}
        kmin, kmax = min(widths), max(widths)
        win = f"{kmin}" if kmin == kmax else f"{kmin}..{kmax}"
        row.formulas.append(f"{_AXES[a]}: {size} -> {o} (windows of {win})")
        st.rf[a] += (kmax - 1) * st.jump[a]
        st.jump[a] *= Fraction(size, o)
    row.config = {"o": list(sp.o)}
    return row


def _linear(st: _State, sp: LinearSpec) -> _Row:
    shape = st.shape
    f_in = shape[-1]
    lead = 1
    for d in shape[:-1]:
        lead *= d
    row = _Row(out=(*shape[:-1], sp.out), resolved=sp)
    row.params = f_in * sp.out + (sp.out if sp.bias else 0)
    row.macs = lead * row.params
    row.formulas.append(f"F: {f_in} -> {sp.out} (params {f_in}*{sp.out}" + (f" + {sp.out})" if sp.bias else ")"))
    if len(shape) == 4:
        row.notes.append(f"linear on a 4-D tensor acts on the last dimension (W = {f_in}) only, as in torch; "
                         "add flatten first for a classifier head")
        st.rf[1] += (shape[3] - 1) * st.jump[1]
    else:
        for a in range(2):
            st.rf[a] += (st.spatial[a] - 1) * st.jump[a]
    row.config = {"in": f_in, "out": sp.out, "bias": sp.bias}
    return row


def _simple(st: _State, stage: Stage) -> _Row:
    op, shape = stage.op, st.shape
    row = _Row(out=shape, resolved=stage.params)
    if op is Op.BN:
        n, c, h, w = _need_4d("bn", shape)
        row.params = 2 * c
        row.macs = n * c * h * w
        row.config = {"eps": stage.params.eps} if isinstance(stage.params, BatchNormSpec) else {}
    elif op is Op.MAGNITUDE:
        n, c, h, w = _need_4d("magnitude", shape)
        row.out = (n, 1, h, w)
        row.formulas.append(f"C: sqrt(sum of squares over {c} channels) -> 1")
    elif op is Op.FLATTEN:
        feats = 1
        for d in shape[1:]:
            feats *= d
        row.out = (shape[0], feats)
        row.formulas.append(f"F: {'*'.join(str(d) for d in shape[1:])} = {feats}")
    elif op is Op.DROPOUT:
        row.config = {"p": getattr(stage.params, "p", 0.5)}
    return row


def infer(input_shape: Sequence[int], stages: Sequence[Stage], *, kernels_dir: str | None = None,
          source: str | None = None) -> ShapeReport:
    """Walk ``stages`` over ``input_shape`` ``(N, C, H, W)`` exactly as torch would.

    Raises:
        ShapeError: a stage torch would refuse; the message names the stage index, its spec and why.
        KernelError: a ``w=`` kernel reference is unknown (from :mod:`featcli.kernels`).
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4 or min(shape) < 1:
        raise ShapeError(f"input shape must be (N, C, H, W) with sizes ≥ 1, got {list(shape)}")
    st = _State(shape=shape, rf=[Fraction(1), Fraction(1)], jump=[Fraction(1), Fraction(1)],
                spatial=(shape[2], shape[3]))
    rows: list[StageReport] = []
    total_params = total_macs = 0
    for i, stage in enumerate(stages, 1):
        sp = stage.params
        try:
            if isinstance(sp, ConvSpec):
                row = _conv(st, sp, kernels_dir)
            elif isinstance(sp, ConvTSpec):
                row = _convt(st, sp)
            elif isinstance(sp, PoolSpec):
                row = _pool(st, sp, stage.op.value)
            elif isinstance(sp, AdaptivePoolSpec):
                row = _adaptive(st, sp, stage.op.value)
            elif isinstance(sp, LinearSpec):
                row = _linear(st, sp)
            else:
                row = _simple(st, stage)
        except _Refusal as exc:
            raise ShapeError(f"stage {i} {stage.text!r}: {exc}") from None
        except KernelError as exc:
            raise KernelError(f"stage {i} {stage.text!r}: {exc.message}", path=exc.path) from None
        resolved = stage if row.resolved is stage.params else Stage(stage.text, stage.op, row.resolved)
        rows.append(StageReport(
            index=i, spec=stage.text, op=stage.op.value, in_shape=st.shape, out_shape=row.out,
            params=row.params, macs=row.macs, rf=(_ceil(st.rf[0]), _ceil(st.rf[1])),
            jump=(st.jump[0], st.jump[1]), formulas=tuple(row.formulas), notes=tuple(row.notes),
            config=row.config, resolved=resolved, solved=row.solved, options=row.options))
        total_params += row.params
        total_macs += row.macs
        st.shape = row.out
        if len(row.out) == 4:
            st.spatial = (row.out[2], row.out[3])
    return ShapeReport(input=shape, stages=tuple(rows), output=st.shape, params=total_params,
                       macs=total_macs, source=source)


def apply_target(stages: Sequence[Stage], target: Pair) -> list[Stage]:
    """Give ``target`` (wanted output ``(H, W)``) to the one stage that has a ``?``; for ``--solve``."""
    hits = [i for i, s in enumerate(stages) if _has_solve(s)]
    if len(hits) != 1:
        raise SpecError(f"--solve needs exactly one stage with p=? or op=?, found {len(hits)}")
    i = hits[0]
    out = list(stages)
    out[i] = Stage(stages[i].text, stages[i].op, dataclasses.replace(stages[i].params, target=target))  # type: ignore[type-var]
    return out


def _has_solve(stage: Stage) -> bool:
    sp = stage.params
    return (isinstance(sp, (ConvSpec, ConvTSpec, PoolSpec)) and sp.p == SOLVE) or \
        (isinstance(sp, ConvTSpec) and sp.op == SOLVE)


def resolve_input(text: str, opts: Any = None) -> tuple[tuple[int, int, int, int], str | None]:
    """An input argument -> ``((N, C, H, W), source path or None)``.

    Shapes (``NxCxHxW``, ``CxHxW``, ``HxW``) are parsed; anything else is an image file whose size is read
    from its header by :func:`featcli.imageio.probe` with the loading options ``opts`` (no full decode).
    """
    from featcli.spec import looks_like_shape, parse_input_shape

    if looks_like_shape(text):
        return parse_input_shape(text), None
    from featcli import imageio  # lazily: PIL only when an image is given

    if opts is None:
        opts = imageio.LoadOptions()
    header = imageio.probe(text, opts)
    n, c, h, w = header.tensor_shape
    return (n, c, h, w), text
