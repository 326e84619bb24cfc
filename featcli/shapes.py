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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Union

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import FeatcliError, ShapeError, SpecError
from featcli.spec import (
    SOLVE,
    AdaptivePoolSpec,
    BatchNormSpec,
    ConvSpec,
    ConvTSpec,
    DropoutSpec,
    LinearSpec,
    Op,
    Pair,
    Params,
    PoolSpec,
    Stage,
)

if TYPE_CHECKING:
    from featcli.imageio import LoadOptions

_AXES = ("H", "W")
_UNITS = ("rows", "columns")
_MAX_OPTIONS = 8
#: Receptive-field arithmetic is exact: an int, or a Fraction once a convt/adaptive pool makes it one.
Num = Union[int, Fraction]  # noqa: UP007 - a runtime alias; X | Y of classes needs 3.10+ at runtime anyway
Options = dict[str, list[dict[str, int]]]


@dataclass(frozen=True)
class StageReport:
    """What one stage does to the shape.

    Attributes:
        index: 1-based position in the stack.
        spec: the stage as written.
        op: canonical op name.
        in_shape: input shape, ``(N, C, H, W)`` or ``(N, F)`` after ``flatten``.
        out_shape: output shape, same conventions.
        params: learned parameters (weights + bias; ``bn``: 2C).
        macs: multiply-accumulates for the whole batch (bias adds included, as torchinfo counts).
        rf: receptive field ``(H, W)`` of one output value, in input pixels.
        jump: distance ``(H, W)`` in input pixels between adjacent outputs (a Fraction after convt).
        formulas: one line per computed dimension, numbers substituted.
        notes: dropped rows/columns, ceil_mode windows, solver answers, caveats.
        config: resolved settings (defaults filled in, conv paddings as ``[[top, bottom], [left, right]]``).
        resolved: the stage with every ``?`` replaced by the solved value (what ``run`` should build).
        solved: the values the solver picked (``{"p": [ph, pw]}``, ``{"op": [...]}``), or None.
        options: per axis, the alternatives next to the solver's answer, or None.
    """

    index: int
    spec: str
    op: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int
    rf: tuple[int, int]
    jump: tuple[Num, Num]
    formulas: tuple[str, ...]
    notes: tuple[str, ...]
    config: dict[str, Any]
    resolved: Stage
    solved: dict[str, list[int]] | None = None
    options: Options | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object documented in ``docs/shape.md``."""
        return {
            "index": self.index, "spec": self.spec, "op": self.op,
            "in": list(self.in_shape), "out": list(self.out_shape),
            "params": self.params, "macs": self.macs,
            "rf": list(self.rf), "jump": [j if j.__class__ is int else _num(j) for j in self.jump],
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
        """The JSON object documented in ``docs/shape.md``."""
        return {
            "input": list(self.input), "source": self.source,
            "stages": [s.to_dict() for s in self.stages],
            "output": list(self.output), "params": self.params, "macs": self.macs,
        }


def _num(x: Num) -> int | float:
    return x if isinstance(x, int) else int(x) if x.denominator == 1 else float(x)


def _ceil(x: Num) -> int:
    return x if isinstance(x, int) else -((-x.numerator) // x.denominator)


def _div(x: Num, d: int) -> Num:
    """``x / d``, kept an int when exact (Fractions are slow; they only appear after convt/adaptive)."""
    if isinstance(x, int):
        return x // d if x % d == 0 else Fraction(x, d)
    q = x / d
    return q.numerator if q.denominator == 1 else q


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


def _dropped_note(a: int, size: int, k: int, s: int, pl: int, pr: int, d: int) -> str:
    """Rows/columns at the end that no window reaches, when the division by the stride is not exact."""
    num = size + pl + pr - d * (k - 1) - 1
    rem = num % s
    unit = _UNITS[a][:-1] if rem == 1 else _UNITS[a]
    first = size - (rem - pr)
    span = f"{first}..{size - 1}" if first < size - 1 else f"{first}"
    where = "padding only" if rem <= pr else f"input {unit} {span} never seen"
    return (f"{_AXES[a]}: {rem} {unit} dropped: ({_AXES[a]} + 2P - D(K-1) - 1) = {num} not divisible by S = {s} "
            f"(the last {rem} of the padded input: {where})")


def _pairs_text(name: str, v: Sequence[int]) -> str:
    return f"{name}={v[0]}" if v[0] == v[1] else f"{name}={v[0]}x{v[1]}"


# --- the walk -----------------------------------------------------------------------------------
class _State:
    """The tensor as the walk goes: shape, receptive field and jump per axis."""

    __slots__ = ("shape", "rf", "jump", "spatial", "allow_torchscript")

    def __init__(self, shape: tuple[int, ...], allow_torchscript: bool = False) -> None:
        self.shape = shape
        self.allow_torchscript = allow_torchscript  # for conv:w= refs to TorchScript files (they are code)
        self.rf: list[Num] = [1, 1]
        self.jump: list[Num] = [1, 1]
        self.spatial = (shape[2], shape[3])  # last (H, W), for the global receptive field after flatten


class _Row:
    """Mutable scratch result of one stage (a plain slotted class: this is the hot path of stdin mode)."""

    __slots__ = ("out", "params", "macs", "formulas", "notes", "config", "resolved", "solved", "options")

    def __init__(self, out: tuple[int, ...] = (), resolved: Params | None = None) -> None:
        self.out = out
        self.params = 0
        self.macs = 0
        self.formulas: list[str] = []
        self.notes: list[str] = []
        self.config: dict[str, Any] = {}
        self.resolved = resolved
        self.solved: dict[str, list[int]] | None = None
        self.options: Options | None = None


class _Refusal(Exception):
    """Internal: a reason torch would refuse; :func:`infer` adds the stage index and spec."""


def _need_4d(op: str, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise _Refusal(f"{op} needs a 4-D (N, C, H, W) input but gets {list(shape)} "
                       "(flatten/linear must come after the spatial stages)")
    return shape[0], shape[1], shape[2], shape[3]


def _groups(c: int, out: int, g: int) -> None:
    if c % g:
        raise _Refusal(f"in channels {c} not divisible by groups g={g}")
    if out % g:
        raise _Refusal(f"out channels {out} not divisible by groups g={g}")


_REFLECT, _CIRCULAR = PaddingMode.REFLECT, PaddingMode.CIRCULAR
_PM_NAME = {pm: pm.value for pm in PaddingMode}
_KERNEL_CACHE: dict[tuple[tuple[str, ...], int, KernelMode, str | None, bool], tuple[int, int, int, int, int]] = {}


def _kernel_shape(refs: tuple[str, ...], c: int, mode: KernelMode, kernels_dir: str | None,
                  allow_torchscript: bool) -> tuple[int, int, int, int, int]:
    key = (refs, c, mode, kernels_dir, allow_torchscript)
    hit = _KERNEL_CACHE.get(key)
    if hit is None:
        from featcli.kernels import conv_weight_shape  # lazily: only stacks with w= pay for it

        o, i, kh, kw, g = conv_weight_shape(list(refs), c, mode, kernels_dir,
                                            allow_torchscript=allow_torchscript)
        hit = _KERNEL_CACHE[key] = (int(o), int(i), int(kh), int(kw), int(g))
    return hit


def _solve(a: int, target: int | None, default: int, fn: Callable[[Any], int], candidates: Iterable[Any],
           label: Callable[[Any], dict[str, int]], what: str, hint: str = "",
           increasing: bool = False) -> tuple[Any, list[dict[str, int]]]:
    """First candidate whose output ``fn(c)`` equals the target, and the options around it.

    ``increasing``: outputs never decrease along ``candidates`` (conv/pool padding), so the search stops a
    few options past the target instead of walking the whole range.
    """
    want = default if target is None else target
    found: list[tuple[Any, int]] = []
    hit = -1
    half = _MAX_OPTIONS // 2
    for c in candidates:
        out = fn(c)
        if out < 1:
            continue
        found.append((c, out))
        if out == want and hit < 0:
            hit = len(found) - 1
        if increasing and out > want and len(found) - max(hit, 0) > half:
            break
    options = [{**label(c), "out": out} for c, out in found]
    if hit >= 0:
        lo = max(0, hit - half)
        return found[hit][0], options[lo:lo + _MAX_OPTIONS]
    near = sorted(options, key=lambda o: abs(o["out"] - want))[:_MAX_OPTIONS]
    near.sort(key=lambda o: tuple(v for k, v in o.items() if k != "out"))
    seen = ", ".join("/".join(f"{k}={v}" for k, v in o.items() if k != "out") + f" -> {o['out']}"
                     for o in near) or "none valid"
    names = "/".join(label(found[0][0])) if found else "value"
    why = "" if target is not None else f" (the default target: {what})"
    raise _Refusal(f"no {names} gives {_AXES[a]} = {want}{why}; nearest: {seen}{hint}")


def _conv_pads(sp: ConvSpec, row: _Row, sizes: Pair, ks: Pair) -> list[tuple[int, int]]:
    """(before, after) padding per axis: explicit, torch's 'same'/'valid', or solved for ``p=?``."""
    ss, ds = sp.s, sp.d
    if sp.p == "same":
        if ss != (1, 1):
            raise _Refusal(f"p=same is not supported for strided convolutions (s={ss[0]}x{ss[1]}), "
                           "as in torch")
        totals = (ds[0] * (ks[0] - 1), ds[1] * (ks[1] - 1))
        return [(t // 2, t - t // 2) for t in totals]  # torch puts the odd pixel after
    if sp.p == "valid":
        return [(0, 0), (0, 0)]
    if sp.p != SOLVE:
        return [(sp.p[0], sp.p[0]), (sp.p[1], sp.p[1])]
    row.options, solved = {}, []
    for a in range(2):
        target = sp.target[a] if sp.target else None
        if sp.pm is PaddingMode.REFLECT:
            limit = sizes[a] - 1
        elif sp.pm is PaddingMode.CIRCULAR:
            limit = sizes[a]
        else:
            limit = ds[a] * (ks[a] - 1) + ss[a] * (target or sizes[a])
        hint = "" if target or ss[a] != 1 else \
            "; p=same keeps the size with asymmetric padding (torch pads the odd pixel after)"
        p, row.options[_AXES[a]] = _solve(
            a, target, -(-sizes[a] // ss[a]),
            lambda p, a=a: conv_axis(sizes[a], ks[a], ss[a], p, p, ds[a]),  # type: ignore[misc]
            range(max(limit, 0) + 1), lambda p: {"p": p}, f"ceil({sizes[a]}/{ss[a]})", hint, increasing=True)
        solved.append(p)
    row.solved = {"p": solved}
    row.notes.append(f"p=? -> {_pairs_text('p', solved)}")
    return [(solved[0], solved[0]), (solved[1], solved[1])]


def _conv(st: _State, sp: ConvSpec, kernels_dir: str | None) -> _Row:
    n, c, h, w = st.shape if len(st.shape) == 4 else _need_4d("conv", st.shape)
    if sp.w:
        out, in_pg, kh, kw, g = _kernel_shape(sp.w, c, sp.mode, kernels_dir, st.allow_torchscript)
        conv_in = in_pg * g
        if conv_in != c and not (sp.mode is KernelMode.GRAY and conv_in == 1):
            raise _Refusal(f"the kernels make a conv for {conv_in} input channels "
                           f"(weight {out}x{in_pg}x{kh}x{kw}, groups={g}) but the input has {c}")
    else:
        assert sp.k is not None
        (kh, kw), g, conv_in = sp.k, sp.g, c
        out = c if sp.out is None else sp.out
        _groups(c, out, g)
        in_pg = c // g
    row = _Row()
    ks, ss, ds, sizes = (kh, kw), sp.s, sp.d, (h, w)
    pads = _conv_pads(sp, row, sizes, ks)
    reflect, circular = sp.pm is _REFLECT, sp.pm is _CIRCULAR
    rf, jump, formulas = st.rf, st.jump, row.formulas
    outs = []
    for a in (0, 1):  # the hot path of stdin mode: plain locals, no helper calls unless needed
        (pl, pr), size, k, s, d = pads[a], sizes[a], ks[a], ss[a], ds[a]
        if reflect and max(pl, pr) >= size:
            raise _Refusal(f"reflect padding {max(pl, pr)} must be smaller than the input "
                           f"{_AXES[a]} = {size}")
        if circular and max(pl, pr) > size:
            raise _Refusal(f"circular padding {max(pl, pr)} wraps around more than once "
                           f"({_AXES[a]} = {size})")
        span = d * (k - 1)
        num = size + pl + pr - span - 1
        if num < 0:
            raise _Refusal(f"kernel {span + 1} (dilated) is larger than the padded input "
                           f"{_AXES[a]} = {size + pl + pr}")
        o = num // s + 1
        outs.append(o)
        pad = f"2*{pl}" if pl == pr else f"{pl}+{pr}"
        formulas.append(f"{_AXES[a]}: floor(({size} + {pad} - {d}*({k}-1) - 1)/{s}) + 1 = {o}")
        if num % s:
            row.notes.append(_dropped_note(a, size, k, s, pl, pr, d))
        rf[a] += span * jump[a]
        jump[a] *= s
    if conv_in != c:
        row.notes.append(f"mode=gray: {c} channels -> 1 (luminance) before the kernels")
    row.out = (n, out, outs[0], outs[1])
    row.params = out * in_pg * kh * kw + (out if sp.bias else 0)
    row.macs = n * outs[0] * outs[1] * row.params
    kernels = f" ({len(sp.w)} kernels, mode={sp.mode.value})" if sp.w else ""
    row.formulas.append(f"C: {c} -> {out}{kernels}")
    row.config = {"in": conv_in, "out": out, "k": [kh, kw], "s": [ss[0], ss[1]],
                  "p": [[pads[0][0], pads[0][1]], [pads[1][0], pads[1][1]]], "d": [ds[0], ds[1]], "g": g,
                  "bias": sp.bias, "pm": _PM_NAME[sp.pm]}
    if sp.w:
        row.config.update(w=list(sp.w), mode=sp.mode.value)
    row.resolved = dataclasses.replace(sp, p=(pads[0][0], pads[1][0])) if row.solved else sp
    return row


def _convt_solve(sp: ConvTSpec, row: _Row, sizes: Pair) -> tuple[list[int], list[int]]:
    """Padding and output_padding per axis, solving ``p=?`` and/or ``op=?`` (default target: H*s)."""
    ks, ss, ds = sp.k, sp.s, sp.d
    if sp.p != SOLVE and sp.op != SOLVE:
        return list(sp.p), list(sp.op)
    row.options, row.solved = {}, {}
    ps, ops = [0, 0], [0, 0]
    for a in range(2):
        limit = max(ss[a], ds[a])  # output_padding must be < stride or < dilation
        p_range = range(ds[a] * (ks[a] - 1) + limit + 1) if sp.p == SOLVE else [sp.p[a]]
        op_range = range(limit) if sp.op == SOLVE else [sp.op[a]]
        names = [n for n, v in (("p", sp.p), ("op", sp.op)) if v == SOLVE]
        (ps[a], ops[a]), row.options[_AXES[a]] = _solve(
            a, sp.target[a] if sp.target else None, sizes[a] * ss[a],
            lambda pq, a=a: convt_axis(sizes[a], ks[a], ss[a], pq[0], pq[1], ds[a]),  # type: ignore[misc]
            [(p, q) for p in p_range for q in op_range],
            lambda pq, names=names: {n: pq[0] if n == "p" else pq[1] for n in names},  # type: ignore[misc]
            f"{sizes[a]}*{ss[a]}")
    if sp.op == SOLVE:
        valid = "; ".join(f"{_AXES[a]}: {list(range(max(ss[a], ds[a])))}" for a in range(2))
        row.notes.append(f"valid output_padding (op < s or op < d): {valid}")
    for name, values in (("p", ps), ("op", ops)):
        if getattr(sp, name) == SOLVE:
            row.solved[name] = values
    row.notes.append("solved: " + ", ".join(_pairs_text(k, v) for k, v in row.solved.items()))
    return ps, ops


def _convt(st: _State, sp: ConvTSpec) -> _Row:
    n, c, h, w = _need_4d("convt", st.shape)
    g, out = sp.g, c if sp.out is None else sp.out
    _groups(c, out, g)
    row = _Row()
    sizes, ks, ss, ds = (h, w), sp.k, sp.s, sp.d
    ps, ops = _convt_solve(sp, row, sizes)
    if not all(ops[a] < ss[a] or ops[a] < ds[a] for a in range(2)):
        raise _Refusal(f"output_padding op={ops[0]}x{ops[1]} must be smaller than either stride "
                       f"s={ss[0]}x{ss[1]} or dilation d={ds[0]}x{ds[1]}")
    outs = []
    for a in range(2):
        o = convt_axis(sizes[a], ks[a], ss[a], ps[a], ops[a], ds[a])
        row.formulas.append(f"{_AXES[a]}: ({sizes[a]}-1)*{ss[a]} - 2*{ps[a]} + {ds[a]}*({ks[a]}-1) "
                            f"+ {ops[a]} + 1 = {o}")
        if o < 1:
            raise _Refusal(f"output {_AXES[a]} = {o} is too small (< 1)")
        outs.append(o)
        # An output pixel gathers input pixels at most floor(D(K-1)/S) apart.
        st.rf[a] += (ds[a] * (ks[a] - 1) // ss[a]) * st.jump[a]
        st.jump[a] = _div(st.jump[a], ss[a])
    row.out = (n, out, outs[0], outs[1])
    weights = c * (out // g) * ks[0] * ks[1]
    row.params = weights + (out if sp.bias else 0)
    # Every input pixel meets every weight once; the bias is added once per output value.
    row.macs = n * h * w * weights + (n * out * outs[0] * outs[1] if sp.bias else 0)
    row.formulas.append(f"C: {c} -> {out}")
    row.config = {"in": c, "out": out, "k": list(ks), "s": list(ss), "p": ps, "op": ops,
                  "d": list(ds), "g": g, "bias": sp.bias}
    row.resolved = dataclasses.replace(sp, p=(ps[0], ps[1]), op=(ops[0], ops[1])) if row.solved else sp
    return row


def _pool(st: _State, sp: PoolSpec, op: str) -> _Row:
    n, c, h, w = _need_4d(op, st.shape)
    row = _Row()
    sizes, ks, ss, ds = (h, w), sp.k, sp.stride, sp.d
    if sp.p == SOLVE:
        ps: list[int] = []
        row.options = {}
        for a in range(2):
            p, row.options[_AXES[a]] = _solve(
                a, sp.target[a] if sp.target else None, -(-sizes[a] // ss[a]),
                lambda p, a=a: pool_axis(sizes[a], ks[a], ss[a], p, ds[a], sp.ceil),  # type: ignore[misc]
                range(ks[a] // 2 + 1), lambda p: {"p": p}, f"ceil({sizes[a]}/{ss[a]})", increasing=True)
            ps.append(p)
        row.solved = {"p": ps}
        row.notes.append(f"p=? -> {_pairs_text('p', ps)}")
    else:
        ps = list(sp.p)
    outs = []
    rounding = "ceil" if sp.ceil else "floor"
    for a in range(2):
        size, k, s, p, d = sizes[a], ks[a], ss[a], ps[a], ds[a]
        if p > k // 2 or p > (d * (k - 1) + 1) // 2:
            raise _Refusal(f"padding {p} must be at most half the kernel size {k} (torch's pooling limit)")
        o = pool_axis(size, k, s, p, d, sp.ceil)
        num = size + 2 * p - d * (k - 1) - 1
        dil = f"{d}*({k}-1)" if op == "maxpool" else f"({k}-1)"
        formula = f"{_AXES[a]}: {rounding}(({size} + 2*{p} - {dil} - 1)/{s}) + 1"
        partial = sp.ceil and num >= 0 and num % s != 0
        if partial and o == -(-num // s):
            row.formulas.append(f"{formula} - 1 = {o}")
            row.notes.append(f"{_AXES[a]}: ceil_mode window {o + 1} would start at {o * s} >= {size} + {p} "
                             "(outside the input and its left padding), so torch drops it")
        else:
            row.formulas.append(f"{formula} = {o}")
            if partial:
                start, end, padded = (o - 1) * s, (o - 1) * s + d * (k - 1), size + 2 * p
                row.notes.append(f"{_AXES[a]}: ceil_mode adds partial window {o} at {start}..{end} "
                                 f"of the padded input (only {padded} long)")
        if o < 1:
            raise _Refusal(f"output {_AXES[a]} = {o} is too small (< 1): kernel {d * (k - 1) + 1} "
                           f"does not fit the padded input {size + 2 * p}")
        if not sp.ceil and num % s:
            row.notes.append(_dropped_note(a, size, k, s, p, p, d))
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
    for a, size in enumerate((h, w)):
        o = sp.o[a]
        # torch's windows: [floor(i*H/o), ceil((i+1)*H/o)); their widths differ by at most one or two.
        starts = range(o) if o <= 4096 else (0, o - 1)
        widths = {-(-(i + 1) * size // o) - (i * size // o) for i in starts}
        kmin, kmax = min(widths), max(widths)
        win = f"{kmin}" if kmin == kmax else f"{kmin}..{kmax}"
        row.formulas.append(f"{_AXES[a]}: {size} -> {o} (windows of {win})")
        st.rf[a] += (kmax - 1) * st.jump[a]
        st.jump[a] = _div(st.jump[a] * size, o)
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
    bias = f" + {sp.out}" if sp.bias else ""
    row.formulas.append(f"F: {f_in} -> {sp.out} (params {f_in}*{sp.out}{bias})")
    if len(shape) == 4:
        row.notes.append(f"linear on a 4-D tensor acts on the last dimension (W = {f_in}) only, as in torch; "
                         "add flatten first for a classifier head")
        st.rf[1] += (shape[3] - 1) * st.jump[1]
    else:  # every feature of the flattened map: the whole last spatial map
        for a in range(2):
            st.rf[a] += (st.spatial[a] - 1) * st.jump[a]
    row.config = {"in": f_in, "out": sp.out, "bias": sp.bias}
    return row


def _simple(st: _State, stage: Stage, kernels_dir: str | None = None) -> _Row:
    op, shape, sp = stage.op, st.shape, stage.params
    row = _Row(out=shape, resolved=sp)
    if op is Op.BN:
        n, c, h, w = _need_4d("bn", shape)
        row.params = 2 * c
        row.macs = n * c * h * w  # one multiply-add per value (scale and shift)
        row.config = {"eps": sp.eps} if isinstance(sp, BatchNormSpec) else {}
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
    elif isinstance(sp, DropoutSpec):
        row.config = {"p": sp.p}
    return row


_OP_NAME = {op: op.value for op in Op}
_DISPATCH: dict[type, Callable[[_State, Stage, str | None], _Row]] = {
    ConvSpec: lambda st, stage, kd: _conv(st, stage.params, kd),  # type: ignore[arg-type]
    ConvTSpec: lambda st, stage, kd: _convt(st, stage.params),  # type: ignore[arg-type]
    PoolSpec: lambda st, stage, kd: _pool(st, stage.params, _OP_NAME[stage.op]),  # type: ignore[arg-type]
    AdaptivePoolSpec: lambda st, stage, kd: _adaptive(st, stage.params, _OP_NAME[stage.op]),  # type: ignore[arg-type]
    LinearSpec: lambda st, stage, kd: _linear(st, stage.params),  # type: ignore[arg-type]
}


def infer(input_shape: Sequence[int], stages: Sequence[Stage], *, kernels_dir: str | None = None,
          source: str | None = None, allow_torchscript: bool = False) -> ShapeReport:
    """Walk ``stages`` over ``input_shape`` ``(N, C, H, W)`` exactly as torch would.

    Args:
        input_shape: ``(N, C, H, W)``, every size at least 1.
        stages: parsed stages (:func:`featcli.spec.parse_stage`).
        kernels_dir: extra kernel folder for ``conv:w=...`` stages.
        source: the image the shape was read from, recorded in the report.
        allow_torchscript: let ``conv:w=`` name TorchScript files (``--trust-torchscript``).

    Raises:
        ShapeError: a stage torch would refuse; the message names the stage index, its spec and why.
        KernelError: a ``w=`` kernel reference is unknown (from :mod:`featcli.kernels`).
    """
    shape = tuple(input_shape)
    if len(shape) != 4 or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise ShapeError(f"input shape must be (N, C, H, W) with integer sizes of at least 1, got {list(shape)}")
    st = _State(shape, allow_torchscript)
    rows: list[StageReport] = []
    total_params = total_macs = 0
    for i, stage in enumerate(stages, 1):
        try:
            row = _DISPATCH.get(type(stage.params), _simple)(st, stage, kernels_dir)
        except _Refusal as exc:
            raise ShapeError(f"stage {i} {stage.text!r}: {exc}") from None
        except FeatcliError as exc:  # from the kernel library (w=): name the stage too
            raise type(exc)(f"stage {i} {stage.text!r}: {exc.message}", path=exc.path) from None
        rf = st.rf
        resolved = stage if row.resolved is stage.params or row.resolved is None else \
            Stage(stage.text, stage.op, row.resolved)
        rows.append(StageReport(
            index=i, spec=stage.text, op=_OP_NAME[stage.op], in_shape=st.shape, out_shape=row.out,
            params=row.params, macs=row.macs, rf=(_ceil(rf[0]), _ceil(rf[1])),
            jump=(st.jump[0], st.jump[1]), formulas=tuple(row.formulas), notes=tuple(row.notes),
            config=row.config, resolved=resolved, solved=row.solved, options=row.options))
        total_params += row.params
        total_macs += row.macs
        st.shape = row.out
        if len(row.out) == 4:
            st.spatial = (row.out[2], row.out[3])
    return ShapeReport(input=shape, stages=tuple(rows), output=st.shape, params=total_params,
                       macs=total_macs, source=source)


def has_solve(stage: Stage) -> bool:
    """True when the stage asks the solver for something (``p=?`` or ``op=?``)."""
    sp = stage.params
    return (isinstance(sp, (ConvSpec, ConvTSpec, PoolSpec)) and sp.p == SOLVE) or \
        (isinstance(sp, ConvTSpec) and sp.op == SOLVE)


def apply_target(stages: Sequence[Stage], target: Pair) -> list[Stage]:
    """Give ``target`` (wanted output ``(H, W)``) to the one stage that has a ``?`` (``--solve``)."""
    hits = [i for i, s in enumerate(stages) if has_solve(s)]
    if len(hits) != 1:
        raise SpecError(f"--solve needs exactly one stage with p=? or op=?, found {len(hits)}")
    i = hits[0]
    sp = stages[i].params
    assert isinstance(sp, (ConvSpec, ConvTSpec, PoolSpec))
    out = list(stages)
    out[i] = Stage(stages[i].text, stages[i].op, dataclasses.replace(sp, target=target))
    return out


def resolve_input(text: str, opts: LoadOptions | None = None) -> tuple[tuple[int, int, int, int], str | None]:
    """An INPUT argument -> ``((N, C, H, W), source path or None)``.

    Shapes (``NxCxHxW``, ``CxHxW``, ``HxW``) are parsed; anything else is an image file whose size is read
    from its header by :func:`featcli.imageio.probe` with the loading options ``opts`` (no pixel decode).
    """
    from featcli.spec import looks_like_shape, parse_input_shape

    try:
        return parse_input_shape(text), None
    except SpecError:
        if looks_like_shape(text):
            raise
    from featcli import imageio  # lazily: PIL only when an image is given

    header = imageio.probe(text, opts)
    n, c, h, w = header.tensor_shape
    return (n, c, h, w), text
