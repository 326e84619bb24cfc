"""Compiled steps for max and average pooling, ``ceil=1`` included: the rule's JSON text, byte for byte.

As :mod:`featcli.shape.fast.steps` for the other common stages. In ceil mode the output is torch's
``ceil((H + 2P - D(K-1) - 1)/S) + 1``, less one where that last window would start past the input and its
left padding, with the rule's note on the partial or dropped window (kept per axis and input size). Padding
torch refuses, a kernel larger than the padded input, ``p=?`` (:mod:`featcli.shape.fast.solved`) and too large
an output are left to the rule (``tests/shape/test_steps.py`` compares both over random shapes).
"""

from __future__ import annotations

from featcli.shape.axis import AXES
from featcli.shape.fast.kept import Kept
from featcli.shape.fast.numbers import Moves, Numbers
from featcli.shape.fast.stepkit import ConfigText, Fields, Step, Walk, dropped
from featcli.shape.infer import MAX_ELEMENTS
from featcli.shape.report import Num
from featcli.stages.grammar import MAX_INT, SOLVE
from featcli.stages.params import PoolSpec
from featcli.stages.spec import Stage

__all__ = ["compile_pool"]


def ceil_axis(a: int, size: int, k: int, s: int, p: int, d: int, lead: str) -> tuple[int, str, str] | None:
    """Axis ``a`` of a ``ceil=1`` pool at input ``size``: the output, the formula's JSON (``lead``: its text up
    to ``+ 1``) and the note's JSON ("" if none), as :func:`featcli.shape.rules.pool` writes them; None where
    the rule refuses or the kernel is larger than the padded input."""
    num = size + 2 * p - d * (k - 1) - 1
    if num < 0:
        return None
    o = (num + s - 1) // s + 1
    if (o - 1) * s >= size + p:
        o -= 1  # the last window must start inside the input or its left padding
    if o < 1:
        return None
    if not num % s:
        return o, f'"{lead} = {o}"', ""
    if o == -(-num // s):
        return o, f'"{lead} - 1 = {o}"', (f'"{AXES[a]}: ceil_mode window {o + 1} would start at {o * s} >= '
                                          f'{size} + {p} (outside the input and its left padding), so torch drops it"')
    start = (o - 1) * s
    return o, f'"{lead} = {o}"', (f'"{AXES[a]}: ceil_mode adds partial window {o} at {start}..{start + d * (k - 1)} '
                                  f'of the padded input (only {size + 2 * p} long)"')


def compile_pool(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step | None:
    """The compiled step of a ``maxpool``/``avgpool`` stage with its padding given, else None."""
    sp = stage.params
    assert isinstance(sp, PoolSpec)
    if sp.padding == SOLVE:
        return None
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), ceil = sp.kernel_size, sp.stride, sp.padding, sp.dilation, sp.ceil_mode
    if any(p > k // 2 or p > (d * (k - 1) + 1) // 2 for p, k, d in ((ph, kh, dh), (pw, kw, dw))):
        return None  # refused whatever the input: the rule says why
    span_h, span_w = dh * (kh - 1), dw * (kw - 1)
    extra_h, extra_w = 2 * ph - span_h - 1, 2 * pw - span_w - 1
    maxpool = stage.op.value == "maxpool"
    dil_h = f"{dh}*({kh}-1)" if maxpool else f"({kh}-1)"
    dil_w = f"{dw}*({kw}-1)" if maxpool else f"({kw}-1)"
    mid_h, mid_w = f" + 2*{ph} - {dil_h} - 1)/{sh}) + 1 = ", f" + 2*{pw} - {dil_w} - 1)/{sw}) + 1 = "
    text = stage.text
    config = ""
    kept_h: Kept[int, str] = Kept(4096)
    kept_w: Kept[int, str] = Kept(4096)
    ceil_kept: tuple[Kept[int, tuple[int, str, str] | None], Kept[int, tuple[int, str, str] | None]] = \
        (Kept(4096), Kept(4096))
    frac: Moves = Kept(1024)
    advance, grow, rf_jump, moved = numbers.advance, numbers.grow, numbers.rf_jump, numbers.moved

    def move(rf: list[Num], jump: list[Num]) -> None:
        advance(rf, jump, 0, span_h, sh)
        advance(rf, jump, 1, span_w, sw)

    def ceil_out(a: int, size: int) -> tuple[int, str, str] | None:
        kept = ceil_kept[a]
        if size in kept:
            return kept[size]
        k, s, p, d, dil = (kh, sh, ph, dh, dil_h) if a == 0 else (kw, sw, pw, dw, dil_w)
        return kept.keep(size, ceil_axis(a, size, k, s, p, d, f"{AXES[a]}: ceil(({size} + 2*{p} - {dil} - 1)/{s}) + 1"))

    def step(st: Walk, i: int) -> Fields | None:
        nonlocal config
        shape = st.shape
        if len(shape) != 4:
            return None
        n, c, h, w = shape
        if not (h and w):
            return None
        if ceil:
            ch, cw = ceil_out(0, h), ceil_out(1, w)
            if ch is None or cw is None:
                return None
            oh, ow = ch[0], cw[0]
            formula = f"{ch[1]},{cw[1]}"
            notes = f"{ch[2]},{cw[2]}" if ch[2] and cw[2] else ch[2] or cw[2]
        else:
            num_h, num_w = h + extra_h, w + extra_w
            if num_h < 0 or num_w < 0:
                return None
            oh, ow = num_h // sh + 1, num_w // sw + 1
            formula = f'"H: floor(({h}{mid_h}{oh}","W: floor(({w}{mid_w}{ow}"'
            notes = dropped(kept_h, 0, h, kh, sh, ph, ph, dh) if num_h % sh else ""
            if num_w % sw:
                nw = dropped(kept_w, 1, w, kw, sw, pw, pw, dw)
                notes = f"{notes},{nw}" if notes else nw
        if oh > MAX_INT or ow > MAX_INT or n * c * oh * ow > MAX_ELEMENTS:
            return None  # the walk's refusal (infer.too_big)
        if not config:
            config = config_text(stage, shape)
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
        shown, out_shape = st.shown, (n, c, oh, ow)
        in_text = shown[1] if shown[0] is shape else f"[{n},{c},{h},{w}]"
        out_text = f"[{n},{c},{oh},{ow}]"
        st.shape, st.shown, st.spatial, st.maker = out_shape, (out_shape, out_text), (oh, ow), (i, text)
        return in_text, out_text, 0, 0, rj, formula, notes, config, "null", "null"

    return step
