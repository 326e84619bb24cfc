"""Compiled steps for ``p=?`` on convs and pools: the padding solved in plain integers, then the plain step.

:func:`featcli.shape.solve.monotone_candidates` finds the answer and its options by bisection over closures;
here the same answer comes in closed form (the output ``floor((H + 2P - D(K-1) - 1)/S) + 1`` never decreases
in ``P``), kept per axis and input size, and the stage is then walked by the compiled step of the same stage
with that padding written out (:mod:`featcli.shape.fast.steps`, one per distinct answer), its text given the
``p=? -> ...`` note, ``solved`` and ``options`` the rule would add. Only the hit is compiled: where no
padding gives the wanted size (a refusal with its nearest options), or the padding mode limits the search
(reflect, circular), or a pool rounds up (``ceil=1``), the step returns None and the rule walks the stage
(``tests/shape/test_steps.py`` compares both over random shapes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from featcli.enums import PaddingMode
from featcli.shape.fast.kept import Kept
from featcli.shape.fast.numbers import Numbers
from featcli.shape.fast.stepkit import ConfigText, Fields, Step, Walk
from featcli.stages.grammar import MAX_INT
from featcli.stages.params import ConvSpec, PoolSpec
from featcli.stages.spec import Stage

__all__ = ["compile_solved"]

Compile = Callable[[Stage, ConfigText, Numbers], "Step | None"]

#: The options the rule shows around the answer (featcli.shape.solve.MAX_OPTIONS) and half of them.
_OPTIONS, _HALF = 8, 4


def solve_axis(size: int, k: int, s: int, d: int, target: int | None, conv: bool) -> tuple[int, str] | None:
    """The padding ``p=?`` gives one axis and the JSON of its options, as :func:`featcli.shape.solve.solve`
    over :func:`featcli.shape.solve.monotone_candidates` finds them; None when no padding hits the target.

    The output at padding ``p`` is ``(2p - base) // s + 1`` with ``base = D(K-1) + 1 - H`` (valid from
    ``2p >= base``); each bisection of ``monotone_candidates`` is a ceiling division here.
    """
    base = d * (k - 1) + 1 - size
    want = target if target else -(-size // s)
    limit = min(max(d * (k - 1) + s * (target or size), 0), MAX_INT) if conv else k // 2
    first = max(0, -(-base // 2))
    at = max(first, -(-((want - 1) * s + base) // 2))
    if at > limit or (2 * at - base) // s + 1 != want:
        return None
    over = min(max(at, -(-(want * s + base) // 2)), limit + 1)
    start = first + max(0, at - first - _HALF)
    stop = min(start + _OPTIONS - 1, max(at + _HALF, over), limit)
    return at, ",".join([f'{{"p":{p},"out":{(2 * p - base) // s + 1}}}' for p in range(start, stop + 1)])


def compile_solved(stage: Stage, config_text: ConfigText, numbers: Numbers, compile_fixed: Compile) -> Step | None:
    """The compiled step of a conv or pool with ``p=?`` (``compile_fixed``: the steps' compiler), else None."""
    sp = stage.params
    if isinstance(sp, ConvSpec):
        if sp.weights or sp.kernel_size is None or sp.padding_mode not in (PaddingMode.ZEROS, PaddingMode.REPLICATE):
            return None
        (kh, kw), (sh, sw), conv = sp.kernel_size, sp.stride, True
    elif isinstance(sp, PoolSpec) and not sp.ceil_mode:
        (kh, kw), (sh, sw), conv = sp.kernel_size, sp.stride, False
    else:
        return None
    (dh, dw), target = sp.dilation, sp.target
    if target is not None and min(target) < 1:
        return None
    th, tw = target if target is not None else (None, None)
    # Per axis, by input size: the padding and the JSON of its options (None: no padding hits the target).
    kept_h: Kept[int, tuple[int, str] | None] = Kept(4096)
    kept_w: Kept[int, tuple[int, str] | None] = Kept(4096)
    fixed: Kept[tuple[int, int], Step | None] = Kept(1024)  # the plain step of each padding solved

    def step(st: Walk, i: int) -> Fields | None:
        shape = st.shape
        if len(shape) != 4:
            return None
        h, w = shape[2], shape[3]
        a = kept_h[h] if h in kept_h else kept_h.keep(h, solve_axis(h, kh, sh, dh, th, conv))
        b = kept_w[w] if w in kept_w else kept_w.keep(w, solve_axis(w, kw, sw, dw, tw, conv))
        if a is None or b is None:
            return None  # refused, with the nearest options: the rule says it
        pads = (a[0], b[0])
        if pads in fixed:
            inner = fixed[pads]
        else:
            plain = Stage(stage.text, stage.op, dataclasses.replace(sp, padding=pads, target=None))
            inner = fixed.keep(pads, compile_fixed(plain, config_text, numbers))
        done = None if inner is None else inner(st, i)
        if done is None:
            return None
        note = f'"p=? -> p={pads[0]}"' if pads[0] == pads[1] else f'"p=? -> p={pads[0]}x{pads[1]}"'
        return (*done[:6], f"{note},{done[6]}" if done[6] else note, done[7],
                f'{{"p":[{pads[0]},{pads[1]}]}}', f'{{"H":[{a[1]}],"W":[{b[1]}]}}')

    return step
