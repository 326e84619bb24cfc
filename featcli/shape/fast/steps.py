"""Compiled steps for the stdin service: the common stages walked and written as JSON text in one go.

A stdin session asks about the same few hundred stages over and over, on ever different input sizes. For the
stages most stacks are made of (a plain conv or transposed conv, max/avg pooling without ``ceil``, global
and adaptive pooling, the pointwise ops, ``bn``, ``flatten``, ``linear`` on a flattened tensor),
:func:`compile_step` prepares once per distinct stage everything that does not depend on the input (kernel
spans, the constant halves of the formulas, the JSON of the config) and returns a step that, per query,
does the integer arithmetic and writes the stage's row as JSON texts (:data:`featcli.shape.fast.stepkit.Fields`,
which :meth:`featcli.shape.fast.answers.Answers._write` puts together): what the rule's row gives, byte for byte
(``tests/shape/test_steps.py`` compares them over thousands of random shapes).

A step only takes the plain road: when its stage could be refused, or says something unusual (a
non-integer jump is fine; a padding mode with its own checks, a solver, kernel files, a 4-D ``linear`` are
not), the step returns None before it changes anything, and the rule in :mod:`featcli.shape.rules` walks
the stage: every refusal and its message come from the rules alone. The config text comes from the rule
too (run once per stage and channel count).
"""

from __future__ import annotations

from featcli.enums import PaddingMode
from featcli.shape.axis import conv_padding
from featcli.shape.fast.joins import compile_join
from featcli.shape.fast.kept import Kept
from featcli.shape.fast.numbers import Moves, Numbers
from featcli.shape.fast.pools import compile_pool
from featcli.shape.fast.solved import compile_solved
from featcli.shape.fast.stepkit import ConfigText, Fields, Step, Walk, dropped, shape_text
from featcli.shape.infer import MAX_ELEMENTS
from featcli.shape.report import Num
from featcli.stages.grammar import MAX_INT, SOLVE
from featcli.stages.params import AdaptivePoolSpec, BatchNormSpec, ConvSpec, ConvTSpec, LinearSpec, PoolSpec
from featcli.stages.registry import REGISTRY
from featcli.stages.spec import Stage

__all__ = ["ConfigText", "Step", "compile_step"]

_SAME = {op for op, d in REGISTRY.items() if d.shape_rule == "same"}
_PLAIN_PM = (PaddingMode.ZEROS, PaddingMode.REPLICATE)  # reflect and circular have checks of their own


def _conv(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step | None:
    sp = stage.params
    assert isinstance(sp, ConvSpec)
    if sp.weights or sp.kernel_size is None or sp.padding == SOLVE or sp.padding_mode not in _PLAIN_PM or \
            (sp.padding == "same" and sp.stride != (1, 1)):
        return None
    (kh, kw), (sh, sw), (dh, dw), g, fixed, bias = sp.kernel_size, sp.stride, sp.dilation, sp.groups, sp.out, sp.bias
    pt, pb, pl, pr = conv_padding(sp.padding, sp.kernel_size, sp.dilation)
    span_h, span_w = dh * (kh - 1), dw * (kw - 1)
    extra_h, extra_w = pt + pb - span_h - 1, pl + pr - span_w - 1
    mid_h = f" + {f'2*{pt}' if pt == pb else f'{pt}+{pb}'} - {dh}*({kh}-1) - 1)/{sh}) + 1 = "
    mid_w = f" + {f'2*{pl}' if pl == pr else f'{pl}+{pr}'} - {dw}*({kw}-1) - 1)/{sw}) + 1 = "
    kk, text = kh * kw, stage.text
    configs: Kept[int, str] = Kept(1024)  # by input channels (the output channels follow from them)
    kept_h: Kept[int, str] = Kept(4096)
    kept_w: Kept[int, str] = Kept(4096)
    frac: Moves = Kept(1024)
    advance, grow, rf_jump, moved = numbers.advance, numbers.grow, numbers.rf_jump, numbers.moved

    def move(rf: list[Num], jump: list[Num]) -> None:
        advance(rf, jump, 0, span_h, sh)
        advance(rf, jump, 1, span_w, sw)

    def step(st: Walk, i: int) -> Fields | None:
        shape = st.shape
        if len(shape) != 4:
            return None
        n, c, h, w = shape
        out = c if fixed is None else fixed
        num_h, num_w = h + extra_h, w + extra_w
        if (g != 1 and (c % g or out % g)) or not (h and w) or num_h < 0 or num_w < 0:
            return None
        oh, ow = num_h // sh + 1, num_w // sw + 1
        if oh > MAX_INT or ow > MAX_INT or n * out * oh * ow > MAX_ELEMENTS:
            return None  # the walk's refusal (infer.too_big)
        params = out * (c // g) * kk + (out if bias else 0)
        macs = n * oh * ow * params
        config = configs.get(c)
        if config is None:
            config = configs.keep(c, config_text(stage, shape))
        notes = dropped(kept_h, 0, h, kh, sh, pt, pb, dh) if num_h % sh else ""
        if num_w % sw:
            nw = dropped(kept_w, 1, w, kw, sw, pl, pr, dw)
            notes = f"{notes},{nw}" if notes else nw
        rf, jump = st.rf, st.jump
        jh, jw = jump
        rh, rw = rf
        if jh.__class__ is int and jw.__class__ is int:
            if rh.__class__ is int and rw.__class__ is int:
                rh, rw = rh + span_h * jh, rw + span_w * jw
                rf[0], rf[1], jump[0], jump[1] = rh, rw, jh * sh, jw * sw
                rj = f'"rf":[{rh},{rw}],"jump":[{jh * sh},{jw * sw}]'
            else:
                rf[0], rf[1], jump[0], jump[1] = grow(rh, span_h, jh), grow(rw, span_w, jw), jh * sh, jw * sw
                rj = rf_jump(rf, jump)
        else:
            rj = moved(frac, rf, jump, move)
        shown, out_shape = st.shown, (n, out, oh, ow)
        in_text = shown[1] if shown[0] is shape else f"[{n},{c},{h},{w}]"
        out_text = f"[{n},{out},{oh},{ow}]"
        st.shape, st.shown, st.spatial, st.maker = out_shape, (out_shape, out_text), (oh, ow), (i, text)
        return (in_text, out_text, params, macs, rj,
                f'"H: floor(({h}{mid_h}{oh}","W: floor(({w}{mid_w}{ow}","C: {c} -> {out}"', notes, config,
                "null", "null")

    return step


def _convt(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step | None:
    sp = stage.params
    assert isinstance(sp, ConvTSpec)
    if sp.padding == SOLVE or sp.output_padding == SOLVE:
        return None
    (kh, kw), (sh, sw), (dh, dw) = sp.kernel_size, sp.stride, sp.dilation
    (ph, pw), (qh, qw) = sp.padding, sp.output_padding
    if not ((qh < sh or qh < dh) and (qw < sw or qw < dw)):
        return None  # refused whatever the input
    g, fixed, bias, kk, text = sp.groups, sp.out, sp.bias, kh * kw, stage.text
    extra_h, extra_w = -2 * ph + dh * (kh - 1) + qh + 1, -2 * pw + dw * (kw - 1) + qw + 1
    reach_h, reach_w = dh * (kh - 1) // sh, dw * (kw - 1) // sw
    mid_h = f"-1)*{sh} - 2*{ph} + {dh}*({kh}-1) + {qh} + 1 = "
    mid_w = f"-1)*{sw} - 2*{pw} + {dw}*({kw}-1) + {qw} + 1 = "
    configs: Kept[int, str] = Kept(1024)  # by input channels
    frac: Moves = Kept(1024)
    grow, div, moved = numbers.grow, numbers.div, numbers.moved

    def move(rf: list[Num], jump: list[Num]) -> None:
        rf[0] = grow(rf[0], reach_h, jump[0])
        rf[1] = grow(rf[1], reach_w, jump[1])
        jump[0], jump[1] = div(jump[0], sh), div(jump[1], sw)

    def step(st: Walk, i: int) -> Fields | None:
        shape = st.shape
        if len(shape) != 4:
            return None
        n, c, h, w = shape
        out = c if fixed is None else fixed
        if (g != 1 and (c % g or out % g)) or not (h and w):
            return None
        oh, ow = (h - 1) * sh + extra_h, (w - 1) * sw + extra_w
        if oh < 1 or ow < 1 or oh > MAX_INT or ow > MAX_INT or n * out * oh * ow > MAX_ELEMENTS:
            return None  # refused, or an empty output with its note (the rule and the walk)
        weights = c * (out // g) * kk
        params = weights + (out if bias else 0)
        macs = n * h * w * weights + (n * out * oh * ow if bias else 0)
        config = configs.get(c)
        if config is None:
            config = configs.keep(c, config_text(stage, shape))
        rf, jump = st.rf, st.jump
        rh, rw, jh, jw = rf[0], rf[1], jump[0], jump[1]
        if rh.__class__ is int and rw.__class__ is int and jh.__class__ is int and jw.__class__ is int \
                and not (jh % sh or jw % sw):
            rh, rw, jh, jw = rh + reach_h * jh, rw + reach_w * jw, jh // sh, jw // sw
            rf[0], rf[1], jump[0], jump[1] = rh, rw, jh, jw
            rj = f'"rf":[{rh},{rw}],"jump":[{jh},{jw}]'
        else:
            rj = moved(frac, rf, jump, move)
        shown, out_shape = st.shown, (n, out, oh, ow)
        in_text = shown[1] if shown[0] is shape else f"[{n},{c},{h},{w}]"
        out_text = f"[{n},{out},{oh},{ow}]"
        st.shape, st.shown, st.spatial, st.maker = out_shape, (out_shape, out_text), (oh, ow), (i, text)
        return (in_text, out_text, params, macs, rj,
                f'"H: ({h}{mid_h}{oh}","W: ({w}{mid_w}{ow}","C: {c} -> {out}"', "", config, "null", "null")

    return step


def _adaptive(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step:
    sp = stage.params
    assert isinstance(sp, AdaptivePoolSpec)
    oh, ow = sp.output_size
    config, text = config_text(stage, (1, 1, 1, 1)), stage.text
    windows: tuple[Kept[int, tuple[str, int]], Kept[int, tuple[str, int]]] = (Kept(4096), Kept(4096))
    advance, grow, rational, div, rf_jump = numbers.advance, numbers.grow, numbers.rational, numbers.div, \
        numbers.rf_jump

    def window(a: int, size: int, o: int) -> tuple[str, int]:
        """The formula's ``windows of K`` text and the widest window, as the rule finds them (kept by size)."""
        found = windows[a].get(size)
        if found is None:
            starts = range(o) if o <= 4096 else (0, o - 1)
            widths = {-(-(i + 1) * size // o) - (i * size // o) for i in starts}
            kmin, kmax = min(widths), max(widths)
            found = windows[a].keep(size, (f"{kmin}" if kmin == kmax else f"{kmin}..{kmax}", kmax))
        return found

    def step(st: Walk, i: int) -> Fields | None:
        shape = st.shape
        if len(shape) != 4:
            return None
        n, c, h, w = shape
        if not (h and w) or n * c * oh * ow > MAX_ELEMENTS:
            return None  # an empty map (refused, or a NaN average), or too large: the rule and the walk
        win_h, k_h = window(0, h, oh)
        win_w, k_w = window(1, w, ow)
        rf, jump = st.rf, st.jump
        for a, reach, size, o in ((0, k_h - 1, h, oh), (1, k_w - 1, w, ow)):
            j = jump[a]
            if j.__class__ is int:
                rf[a] = grow(rf[a], reach, j)
                jump[a] = rational(j * size, o)
            else:
                advance(rf, jump, a, reach, size)
                jump[a] = div(jump[a], o)
        shown, out_shape = st.shown, (n, c, oh, ow)
        in_text = shown[1] if shown[0] is shape else f"[{n},{c},{h},{w}]"
        out_text = f"[{n},{c},{oh},{ow}]"
        st.shape, st.shown, st.spatial, st.maker = out_shape, (out_shape, out_text), (oh, ow), (i, text)
        return (in_text, out_text, 0, 0, rf_jump(rf, jump),
                f'"H: {h} -> {oh} (windows of {win_h})","W: {w} -> {ow} (windows of {win_w})"', "", config,
                "null", "null")

    return step


def _same(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step:
    """Pointwise ops without parameters: the shape, receptive field and jump go through unchanged."""
    config, text, rf_jump = config_text(stage, (1, 1, 1, 1)), stage.text, numbers.rf_jump

    def step(st: Walk, i: int) -> Fields | None:
        shape = st.shape
        shown = st.shown
        if shown[0] is shape:
            s = shown[1]
        else:
            s = shape_text(shape)
            st.shown = (shape, s)
        st.maker = (i, text)
        return s, s, 0, 0, rf_jump(st.rf, st.jump), "", "", config, "null", "null"

    return step


def _bn(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step:
    config, text, rf_jump = config_text(stage, (1, 1, 1, 1)), stage.text, numbers.rf_jump

    def step(st: Walk, i: int) -> Fields | None:
        shape = st.shape
        if len(shape) != 4:
            return None
        n, c, h, w = shape
        shown = st.shown
        if shown[0] is shape:
            s = shown[1]
        else:
            s = f"[{n},{c},{h},{w}]"
            st.shown = (shape, s)
        st.maker = (i, text)
        return s, s, 2 * c, n * c * h * w, rf_jump(st.rf, st.jump), "", "", config, "null", "null"

    return step


def _flatten(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step:
    config, text, rf_jump = config_text(stage, (1, 1, 1, 1)), stage.text, numbers.rf_jump

    def step(st: Walk, i: int) -> Fields | None:
        shape = st.shape
        if len(shape) != 4:
            return None
        n, c, h, w = shape
        feats = c * h * w
        shown, out_shape = st.shown, (n, feats)
        in_text = shown[1] if shown[0] is shape else f"[{n},{c},{h},{w}]"
        out_text = f"[{n},{feats}]"
        st.shape, st.shown, st.maker = out_shape, (out_shape, out_text), (i, text)
        return (in_text, out_text, 0, 0, rf_jump(st.rf, st.jump), f'"F: {c}*{h}*{w} = {feats}"', "", config,
                "null", "null")

    return step


def _linear(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step | None:
    sp = stage.params
    assert isinstance(sp, LinearSpec)
    out, bias = sp.out, sp.bias
    sample = config_text(stage, (1, 1))
    if not sample.startswith('{"in":1,'):
        return None
    config_tail = sample[len('{"in":1'):]  # ,"out":..,"bias":..}
    bias_text = f" + {out}" if bias else ""
    text, grow, rf_jump = stage.text, numbers.grow, numbers.rf_jump

    def step(st: Walk, i: int) -> Fields | None:
        shape = st.shape
        if len(shape) != 2:
            return None  # on a 4-D tensor: a note and another receptive field (the rule)
        n, f_in = shape
        params = f_in * out + (out if bias else 0)
        rf, jump, spatial = st.rf, st.jump, st.spatial
        rf[0] = grow(rf[0], spatial[0] - 1, jump[0])
        rf[1] = grow(rf[1], spatial[1] - 1, jump[1])
        shown, out_shape = st.shown, (n, out)
        in_text = shown[1] if shown[0] is shape else f"[{n},{f_in}]"
        out_text = f"[{n},{out}]"
        st.shape, st.shown, st.maker = out_shape, (out_shape, out_text), (i, text)
        return (in_text, out_text, params, n * params, rf_jump(rf, jump),
                f'"F: {f_in} -> {out} (params {f_in}*{out}{bias_text})"', "", f'{{"in":{f_in}{config_tail}', "null",
                "null")

    return step


def compile_step(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step | None:
    """The compiled step of ``stage``, or None where the rule walks it always (branches, kernel files, ...).

    ``config_text``: the rule's config as JSON text; ``numbers``: the session's receptive-field arithmetic."""
    op, sp = stage.op, stage.params
    if isinstance(sp, (ConvSpec, PoolSpec)) and sp.padding == SOLVE:
        return compile_solved(stage, config_text, numbers, compile_step)
    if op in _SAME:
        return _same(stage, config_text, numbers)
    if isinstance(sp, ConvSpec):
        return _conv(stage, config_text, numbers)
    if isinstance(sp, PoolSpec):
        return compile_pool(stage, config_text, numbers)
    if isinstance(sp, ConvTSpec):
        return _convt(stage, config_text, numbers)
    if isinstance(sp, AdaptivePoolSpec):
        return _adaptive(stage, config_text, numbers)
    if isinstance(sp, BatchNormSpec):
        return _bn(stage, config_text, numbers)
    if REGISTRY[op].shape_rule == "flatten":
        return _flatten(stage, config_text, numbers)
    if isinstance(sp, LinearSpec):
        return _linear(stage, config_text, numbers)
    return compile_join(stage, numbers)
