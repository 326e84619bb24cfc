"""One shape rule per kind of stage: output shape, parameters, MACs, formulas, notes, receptive field.

Each rule takes the walk state (shape, receptive field, jump) and a parsed stage, updates the receptive
field and jump in place and returns a :class:`featcli.shape.state.Row`; it raises
:class:`featcli.shape.state.Refusal` where torch would refuse. Which rule an op uses is its registry
entry's ``shape_rule``. Pure Python: no torch, no numpy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from featcli.enums import Interpolation, KernelMode, PaddingMode
from featcli.shape import branches
from featcli.shape.axis import AXES, conv_axis, convt_axis, dropped_note, pairs_text, pool_axis
from featcli.shape.report import div_num, mul_num
from featcli.shape.solve import conv_pads, convt_pads, monotone_candidates, solve
from featcli.shape.state import Refusal, Row, WalkState, check_groups, kernel_too_large, need_4d, need_values
from featcli.stages.grammar import SOLVE
from featcli.stages.params import (
    AdaptivePoolSpec,
    BatchNormSpec,
    ConvSpec,
    ConvTSpec,
    DropoutSpec,
    GeluSpec,
    GroupNormSpec,
    LayerNormSpec,
    LeakyReLUSpec,
    LinearSpec,
    PoolSpec,
    PReLUSpec,
    UpsampleSpec,
)
from featcli.stages.spec import Stage


def _kernel_shape(st: WalkState, refs: tuple[str, ...], c: int, mode: KernelMode) -> tuple[int, int, int, int, int]:
    from featcli.kernels import conv_weight_shape  # lazily: only stacks with w= pay for it (cached there)

    o, i, kh, kw, g = conv_weight_shape(refs, c, mode, st.kernels_dir, allow_torchscript=st.allow_torchscript)
    return int(o), int(i), int(kh), int(kw), int(g)


def conv(st: WalkState, stage: Stage) -> Row:
    sp = stage.params
    assert isinstance(sp, ConvSpec)
    n, c, h, w = need_4d("conv", st.shape)
    if sp.weights:
        out, in_pg, kh, kw, g = _kernel_shape(st, sp.weights, c, sp.mode)
        conv_in = in_pg * g
        if conv_in != c and not (sp.mode is KernelMode.GRAY and conv_in == 1):
            raise Refusal(f"the kernels make a conv for {conv_in} input channels "
                           f"(weight {out}x{in_pg}x{kh}x{kw}, groups={g}) but the input has {c}")
    else:
        assert sp.kernel_size is not None
        (kh, kw), g, conv_in = sp.kernel_size, sp.groups, c
        out = c if sp.out is None else sp.out
        if g != 1:
            check_groups(c, out, g)
        in_pg = c // g
    row = Row()
    ks, ss, ds, sizes = (kh, kw), sp.stride, sp.dilation, (h, w)
    need_values("conv", st.shape)
    pads = conv_pads(sp, row, sizes, ks)
    outs = []
    for a in range(2):
        (pl, pr), size, k, s, d = pads[a], sizes[a], ks[a], ss[a], ds[a]
        if sp.padding_mode is PaddingMode.REFLECT and max(pl, pr) >= size:
            raise Refusal(f"reflect padding {max(pl, pr)} must be smaller than the input "
                           f"{AXES[a]} = {size}")
        if sp.padding_mode is PaddingMode.CIRCULAR and max(pl, pr) > size:
            raise Refusal(f"circular padding {max(pl, pr)} wraps around more than once "
                           f"({AXES[a]} = {size})")
        o = conv_axis(size, k, s, pl, pr, d)
        if o < 0:
            raise Refusal(kernel_too_large(sizes, pads, ks, ds, ss))
        outs.append(o)
        padding = f"2*{pl}" if pl == pr else f"{pl}+{pr}"
        row.formulas.append(f"{AXES[a]}: floor(({size} + {padding} - {d}*({k}-1) - 1)/{s}) + 1 = {o}")
        if (size + pl + pr - d * (k - 1) - 1) % s:
            row.notes.append(dropped_note(a, size, k, s, pl, pr, d))
        st.rf[a] += d * (k - 1) * st.jump[a]
        st.jump[a] = mul_num(st.jump[a], s)
    if conv_in != c:
        row.notes.append(f"mode=gray: {c} channels -> 1 (luminance) before the kernels")
    row.out = (n, out, outs[0], outs[1])
    row.params = params = out * in_pg * kh * kw + (out if sp.bias else 0)
    row.macs = n * outs[0] * outs[1] * params
    if sp.weights:
        row.formulas.append(f"C: {c} -> {out} ({len(sp.weights)} kernels, mode={sp.mode.value})")
    else:
        row.formulas.append(f"C: {c} -> {out}")
    (pt, pb), (pl, pr) = pads
    row.config = {"in": conv_in, "out": out, "k": [kh, kw], "s": [ss[0], ss[1]], "p": [[pt, pb], [pl, pr]],
                  "d": [ds[0], ds[1]], "g": g, "bias": sp.bias, "pm": sp.padding_mode.value}
    if sp.weights:
        row.config.update(w=list(sp.weights), mode=sp.mode.value)
    row.resolved = dataclasses.replace(sp, padding=(pt, pl)) if row.solved else sp
    return row


def convt(st: WalkState, stage: Stage) -> Row:
    sp = stage.params
    assert isinstance(sp, ConvTSpec)
    n, c, h, w = need_4d("convt", st.shape)
    need_values("convt", st.shape)
    g, out = sp.groups, c if sp.out is None else sp.out
    check_groups(c, out, g)
    row = Row()
    sizes, ks, ss, ds = (h, w), sp.kernel_size, sp.stride, sp.dilation
    ps, ops = convt_pads(sp, row, sizes)
    if not all(ops[a] < ss[a] or ops[a] < ds[a] for a in range(2)):
        raise Refusal(f"output_padding op={ops[0]}x{ops[1]} must be smaller than either stride "
                       f"s={ss[0]}x{ss[1]} or dilation d={ds[0]}x{ds[1]}")
    outs = []
    for a in range(2):
        o = convt_axis(sizes[a], ks[a], ss[a], ps[a], ops[a], ds[a])
        row.formulas.append(f"{AXES[a]}: ({sizes[a]}-1)*{ss[a]} - 2*{ps[a]} + {ds[a]}*({ks[a]}-1) "
                            f"+ {ops[a]} + 1 = {o}")
        if o < 0:
            raise Refusal(f"output {AXES[a]} = {o} is too small (< 0)")
        # o == 0: an empty output, as torch's oneDNN path returns it (its reference path refuses a batch of
        # one; featcli's torch backend makes the empty tensor itself, so run agrees with shape).
        outs.append(o)
        # An output pixel gathers input pixels at most floor(D(K-1)/S) apart.
        st.rf[a] += (ds[a] * (ks[a] - 1) // ss[a]) * st.jump[a]
        st.jump[a] = div_num(st.jump[a], ss[a])
    row.out = (n, out, outs[0], outs[1])
    weights = c * (out // g) * ks[0] * ks[1]
    row.params = weights + (out if sp.bias else 0)
    # Every input pixel meets every weight once; the bias is added once per output value.
    row.macs = n * h * w * weights + (n * out * outs[0] * outs[1] if sp.bias else 0)
    row.formulas.append(f"C: {c} -> {out}")
    row.config = {"in": c, "out": out, "k": list(ks), "s": list(ss), "p": ps, "op": ops,
                  "d": list(ds), "g": g, "bias": sp.bias}
    row.resolved = dataclasses.replace(sp, padding=(ps[0], ps[1]), output_padding=(ops[0], ops[1])) \
        if row.solved else sp
    return row


def pool(st: WalkState, stage: Stage) -> Row:
    sp, op = stage.params, stage.op.value
    assert isinstance(sp, PoolSpec)
    n, c, h, w = need_4d(op, st.shape)
    need_values(op, st.shape)
    row = Row()
    sizes, ks, ss, ds = (h, w), sp.kernel_size, sp.stride, sp.dilation
    if sp.padding == SOLVE:
        ps: list[int] = []
        row.options = {}
        for a in range(2):
            def fn(p: int, a: int = a) -> int:
                return pool_axis(sizes[a], ks[a], ss[a], p, ds[a], sp.ceil_mode)

            target = sp.target[a] if sp.target else None
            p, row.options[AXES[a]] = solve(a, target, -(-sizes[a] // ss[a]), fn,
                                            monotone_candidates(fn, ks[a] // 2, target or -(-sizes[a] // ss[a])),
                                            lambda p: {"p": p}, f"ceil({sizes[a]}/{ss[a]})")
            ps.append(p)
        row.solved = {"p": ps}
        row.notes.append(f"p=? -> {pairs_text('p', ps)}")
    else:
        ps = [sp.padding[0], sp.padding[1]]
    outs = []
    ceil = sp.ceil_mode
    rounding = "ceil" if ceil else "floor"
    for a in range(2):
        size, k, s, p, d = sizes[a], ks[a], ss[a], ps[a], ds[a]
        if p > k // 2 or p > (d * (k - 1) + 1) // 2:
            raise Refusal(f"padding {p} must be at most half the kernel size {k} (torch's pooling limit)")
        num = size + 2 * p - d * (k - 1) - 1
        o = pool_axis(size, k, s, p, d, ceil)
        dil = f"{d}*({k}-1)" if op == "maxpool" else f"({k}-1)"
        formula = f"{AXES[a]}: {rounding}(({size} + 2*{p} - {dil} - 1)/{s}) + 1"
        partial = ceil and num >= 0 and num % s != 0
        if not partial:
            row.formulas.append(f"{formula} = {o}")
        elif o == -(-num // s):
            row.formulas.append(f"{formula} - 1 = {o}")
            row.notes.append(f"{AXES[a]}: ceil_mode window {o + 1} would start at {o * s} >= {size} + {p} "
                             "(outside the input and its left padding), so torch drops it")
        else:
            row.formulas.append(f"{formula} = {o}")
            start, end, padded = (o - 1) * s, (o - 1) * s + d * (k - 1), size + 2 * p
            row.notes.append(f"{AXES[a]}: ceil_mode adds partial window {o} at {start}..{end} "
                             f"of the padded input (only {padded} long)")
        if o < 1:
            raise Refusal(f"output {AXES[a]} = {o} is too small (< 1): kernel {d * (k - 1) + 1} "
                           f"does not fit the padded input {size + 2 * p}")
        if not ceil and num % s:
            row.notes.append(dropped_note(a, size, k, s, p, p, d))
        outs.append(o)
        st.rf[a] += d * (k - 1) * st.jump[a]
        st.jump[a] = mul_num(st.jump[a], s)
    row.out = (n, c, outs[0], outs[1])
    row.config = {"k": [ks[0], ks[1]], "s": [ss[0], ss[1]], "p": ps, "ceil": ceil}
    if op == "maxpool":
        row.config["d"] = list(ds)
    else:
        row.config["cip"] = sp.count_include_pad
    row.resolved = dataclasses.replace(sp, padding=(ps[0], ps[1])) if row.solved else sp
    return row


def adaptive(st: WalkState, stage: Stage) -> Row:
    sp, op = stage.params, stage.op.value
    assert isinstance(sp, AdaptivePoolSpec)
    n, c, h, w = need_4d(op, st.shape)
    if sp.kind == "max" or sp.output_size != (1, 1):  # torch's average over all of an empty map is a NaN, not a refusal
        need_values(op, st.shape)
    row = Row(out=(n, c, sp.output_size[0], sp.output_size[1]), resolved=sp)
    for a, size in enumerate((h, w)):
        o = sp.output_size[a]
        # torch's windows: [floor(i*H/o), ceil((i+1)*H/o)); their widths differ by at most one or two.
        starts = range(o) if o <= 4096 else (0, o - 1)
        widths = {-(-(i + 1) * size // o) - (i * size // o) for i in starts} if size else {0}
        kmin, kmax = min(widths), max(widths)
        win = f"{kmin}" if kmin == kmax else f"{kmin}..{kmax}"
        row.formulas.append(f"{AXES[a]}: {size} -> {o} (windows of {win})")
        st.rf[a] += max(kmax - 1, 0) * st.jump[a]
        st.jump[a] = div_num(st.jump[a] * size, o)
    row.config = {"o": list(sp.output_size)}
    return row


def linear(st: WalkState, stage: Stage) -> Row:
    sp = stage.params
    assert isinstance(sp, LinearSpec)
    shape = st.shape
    f_in = shape[-1]
    lead = 1
    for d in shape[:-1]:
        lead *= d
    row = Row(out=(*shape[:-1], sp.out), resolved=sp)
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


def same(st: WalkState, stage: Stage) -> Row:
    """Shape-preserving ops without parameters (relu, sigmoid, dropout, softmax, ...)."""
    row = Row(out=st.shape, resolved=stage.params)
    sp = stage.params
    if isinstance(sp, DropoutSpec):
        row.config = {"p": sp.p}
    elif isinstance(sp, LeakyReLUSpec):
        row.config = {"slope": sp.negative_slope}
    elif isinstance(sp, GeluSpec):
        row.config = {"approx": sp.approximate.value}
    return row


def _factor(f: float) -> str:
    return str(int(f)) if f.is_integer() else repr(f)


def upsample(st: WalkState, stage: Stage) -> Row:
    """``F.interpolate``'s sizes: ``o=`` as given, or ``floor(in * sf)`` in double precision, as torch computes
    them; the values of a fractional ``sf`` use the scale as given unless ``rsf=1`` (then ``in/out``)."""
    sp = stage.params
    assert isinstance(sp, UpsampleSpec)
    n, c, h, w = need_4d("upsample", st.shape)
    row = Row(resolved=sp)
    bilinear = sp.mode is Interpolation.BILINEAR
    outs = []
    for a, size in enumerate((h, w)):
        if sp.scale_factor is None:
            assert sp.output_size is not None
            o = sp.output_size[a]
            row.formulas.append(f"{AXES[a]}: {size} -> {o} (o=)")
        else:
            f = sp.scale_factor[a]
            o = math.floor(size * f)
            row.formulas.append(f"{AXES[a]}: floor({size} * {_factor(f)}) = {o}")
            if size and o and not sp.recompute_scale_factor and not (bilinear and sp.align_corners) \
                    and o != size * f:
                row.notes.append(f"{AXES[a]}: torch samples the input at output position / {_factor(f)} (the scale "
                                 f"as given), not at * {size}/{o} as rsf=1 would")
        outs.append(o)
    if min(h, w, *outs) < 1:
        raise Refusal(f"input and output sizes must be greater than 0 (torch refuses it), but the input is {h}x{w} "
                      f"and the output {outs[0]}x{outs[1]}")
    for a, size in enumerate((h, w)):  # bilinear mixes two neighbouring input pixels, nearest copies one
        st.rf[a] += (1 if bilinear and size > 1 else 0) * st.jump[a]
        st.jump[a] = div_num(st.jump[a] * size, outs[a])
    row.out = (n, c, outs[0], outs[1])
    row.macs = (4 if bilinear else 1) * n * c * outs[0] * outs[1]  # fvcore's count per output value
    row.config = {"o": None if sp.output_size is None else list(sp.output_size),
                  "sf": None if sp.scale_factor is None else list(sp.scale_factor), "mode": sp.mode.value,
                  "ac": sp.align_corners, "rsf": sp.recompute_scale_factor}
    return row


def norm(st: WalkState, stage: Stage) -> Row:
    """``groupnorm`` and ``layernorm``: the shape kept, 2C learned parameters (scale and shift per channel)."""
    sp, op = stage.params, stage.op.value
    n, c, h, w = need_4d(op, st.shape)
    row = Row(out=st.shape, resolved=sp)
    row.params = 2 * c
    row.macs = 5 * n * c * h * w  # fvcore's rough count of a norm with affine weights, per value
    if isinstance(sp, GroupNormSpec):
        g = sp.groups
        if c % g:
            raise Refusal(f"{c} channels cannot be split into g={g} groups (GroupNorm needs C divisible by g)")
        if n * (c // g) * h * w == 1:
            raise Refusal(f"each of the g={g} groups holds one value (N*C/g*H*W = 1), and torch's GroupNorm refuses "
                          "to standardise a single value")
        row.formulas.append(f"C: {c} channels in {g} groups of {c // g}, each standardised over "
                            f"{c // g}*{h}*{w} values")
        row.config = {"g": g, "eps": sp.eps}
    else:
        assert isinstance(sp, LayerNormSpec)
        row.formulas.append(f"C: the {c} values at each of the {h}*{w} positions standardised")
        row.config = {"eps": sp.eps}
    return row


def bn(st: WalkState, stage: Stage) -> Row:
    n, c, h, w = need_4d("bn", st.shape)
    row = Row(out=st.shape, resolved=stage.params)
    row.params = 2 * c
    row.macs = n * c * h * w  # one multiply-add per value (scale and shift)
    sp = stage.params
    row.config = {"eps": sp.eps} if isinstance(sp, BatchNormSpec) else {}
    return row


def magnitude(st: WalkState, stage: Stage) -> Row:
    n, c, h, w = need_4d("magnitude", st.shape)
    row = Row(out=(n, 1, h, w), resolved=stage.params)
    row.formulas.append(f"C: sqrt(sum of squares over {c} channels) -> 1")
    return row


def flatten(st: WalkState, stage: Stage) -> Row:
    shape = st.shape
    feats = 1
    for d in shape[1:]:
        feats *= d
    row = Row(out=(shape[0], feats), resolved=stage.params)
    row.formulas.append(f"F: {'*'.join(str(d) for d in shape[1:])} = {feats}")
    return row


def prelu(st: WalkState, stage: Stage) -> Row:
    """One slope per channel (or one shared): ``n`` of them, or as many as the checkpoint tensor holds."""
    sp = stage.params
    assert isinstance(sp, PReLUSpec)
    c = st.shape[1]
    if sp.weights is not None:
        from featcli.kernels import vector_length  # lazily: only stacks with w= pay for it

        n = vector_length(sp.weights, allow_torchscript=st.allow_torchscript)
    else:
        n = c if sp.num_parameters is None else sp.num_parameters
    if n not in (1, c):
        raise Refusal(f"{n} slopes for {c} channels; PReLU takes 1 or one per channel")
    row = Row(out=st.shape, resolved=stage.params)
    row.params = n  # MACs stay 0: an activation (docs/shape.md, "Columns and conventions")
    row.config = {"n": n, **({"w": sp.weights} if sp.weights else {"init": sp.init})}
    return row


#: rule name (``OpDef.shape_rule``) -> the function that walks one stage.
RULES: dict[str, Callable[[WalkState, Stage], Row]] = {
    "conv": conv, "convt": convt, "pool": pool, "adaptive": adaptive, "linear": linear, "same": same, "bn": bn,
    "magnitude": magnitude, "flatten": flatten, "prelu": prelu, "upsample": upsample, "norm": norm,
    "save": branches.save, "add": branches.add, "mul": branches.mul, "cat": branches.cat,
}
