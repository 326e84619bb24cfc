"""The solver behind ``p=?`` and ``op=?``: the padding (or output_padding) that gives a wanted output size."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from featcli.enums import PaddingMode
from featcli.shape.axis import AXES, conv_axis, convt_axis, pairs_text
from featcli.shape.state import Refusal, Row
from featcli.stages.grammar import SOLVE, Pair
from featcli.stages.params import ConvSpec, ConvTSpec

MAX_OPTIONS = 8


def solve(a: int, target: int | None, default: int, fn: Callable[[Any], int], candidates: Iterable[Any],
           label: Callable[[Any], dict[str, int]], what: str, hint: str = "",
           increasing: bool = False) -> tuple[Any, list[dict[str, int]]]:
    """First candidate whose output ``fn(c)`` equals the target, and the options around it.

    ``increasing``: outputs never decrease along ``candidates`` (conv/pool padding), so the search stops a
    few options past the target instead of walking the whole range.
    """
    want = default if target is None else target
    found: list[tuple[Any, int]] = []
    hit = -1
    half = MAX_OPTIONS // 2
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
        return found[hit][0], options[lo:lo + MAX_OPTIONS]
    near = sorted(options, key=lambda o: abs(o["out"] - want))[:MAX_OPTIONS]
    near.sort(key=lambda o: tuple(v for k, v in o.items() if k != "out"))
    seen = ", ".join("/".join(f"{k}={v}" for k, v in o.items() if k != "out") + f" -> {o['out']}"
                     for o in near) or "none valid"
    names = "/".join(label(found[0][0])) if found else "value"
    why = "" if target is not None else f" (the default target: {what})"
    raise Refusal(f"no {names} gives {AXES[a]} = {want}{why}; nearest: {seen}{hint}")


def conv_pads(sp: ConvSpec, row: Row, sizes: Pair, ks: Pair) -> list[tuple[int, int]]:
    """(before, after) padding per axis: explicit, torch's 'same'/'valid', or solved for ``p=?``."""
    ss, ds = sp.s, sp.d
    if sp.p == "same":
        if ss != (1, 1):
            raise Refusal(f"p=same is not supported for strided convolutions (s={ss[0]}x{ss[1]}), "
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
        p, row.options[AXES[a]] = solve(
            a, target, -(-sizes[a] // ss[a]),
            lambda p, a=a: conv_axis(sizes[a], ks[a], ss[a], p, p, ds[a]),  # type: ignore[misc]
            range(max(limit, 0) + 1), lambda p: {"p": p}, f"ceil({sizes[a]}/{ss[a]})", hint, increasing=True)
        solved.append(p)
    row.solved = {"p": solved}
    row.notes.append(f"p=? -> {pairs_text('p', solved)}")
    return [(solved[0], solved[0]), (solved[1], solved[1])]



def convt_pads(sp: ConvTSpec, row: Row, sizes: Pair) -> tuple[list[int], list[int]]:
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
        (ps[a], ops[a]), row.options[AXES[a]] = solve(
            a, sp.target[a] if sp.target else None, sizes[a] * ss[a],
            lambda pq, a=a: convt_axis(sizes[a], ks[a], ss[a], pq[0], pq[1], ds[a]),  # type: ignore[misc]
            [(p, q) for p in p_range for q in op_range],
            lambda pq, names=names: {n: pq[0] if n == "p" else pq[1] for n in names},  # type: ignore[misc]
            f"{sizes[a]}*{ss[a]}")
    if sp.op == SOLVE:
        valid = "; ".join(f"{AXES[a]}: {list(range(max(ss[a], ds[a])))}" for a in range(2))
        row.notes.append(f"valid output_padding (op < s or op < d): {valid}")
    for name, values in (("p", ps), ("op", ops)):
        if getattr(sp, name) == SOLVE:
            row.solved[name] = values
    row.notes.append("solved: " + ", ".join(pairs_text(k, v) for k, v in row.solved.items()))
    return ps, ops

