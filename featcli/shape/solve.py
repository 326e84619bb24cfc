"""The solver behind ``p=?`` and ``op=?``: the padding (or output_padding) that gives a wanted output size.

The answer and the options shown around it are those of a walk over every candidate in order (:func:`solve`),
but that walk only ever sees a few dozen candidates: the output size is monotone in the padding (conv, pool)
or linear in it (convt), so the candidates that can matter are found by bisection or directly from
``H_out = floor((H + 2P - D(K-1) - 1)/S) + 1`` (:func:`monotone_candidates`, :func:`convt_candidates`), and the
time and memory of a query do not grow with the numbers in it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from featcli.enums import PaddingMode
from featcli.shape.axis import AXES, conv_axis, convt_axis, pairs_text
from featcli.shape.state import Refusal, Row
from featcli.stages.grammar import MAX_INT, SOLVE, Pair
from featcli.stages.params import ConvSpec, ConvTSpec

MAX_OPTIONS = 8


def solve(a: int, target: int | None, default: int, fn: Callable[[Any], int], candidates: Iterable[Any],
           label: Callable[[Any], dict[str, int]], what: str, hint: str = "",
           increasing: bool = False) -> tuple[Any, list[dict[str, int]]]:
    """First candidate whose output ``fn(c)`` equals the target, and the options around it.

    ``increasing``: outputs never decrease along ``candidates`` (conv/pool padding), so the search stops a
    few options past the target instead of walking the whole range. ``candidates`` must be short: the
    callers pass what :func:`monotone_candidates` or :func:`convt_candidates` keep of the whole range.
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


def _p_label(p: int) -> dict[str, int]:
    return {"p": p}


def _conv_solve(a: int, size: int, k: int, s: int, d: int, limit: int, target: int | None,
                hint: str) -> tuple[int, list[dict[str, int]]]:
    """The padding of axis ``a`` of a conv (``p=?``) and the options around it."""
    def fn(p: int) -> int:
        return conv_axis(size, k, s, p, p, d)

    default = -(-size // s)
    p, options = solve(a, target, default, fn, monotone_candidates(fn, min(max(limit, 0), MAX_INT), target or default),
                       _p_label, f"ceil({size}/{s})", hint)
    return int(p), options


def conv_pads(sp: ConvSpec, row: Row, sizes: Pair, ks: Pair) -> list[tuple[int, int]]:
    """(before, after) padding per axis: explicit, torch's 'same'/'valid', or solved for ``p=?``."""
    ss, ds = sp.stride, sp.dilation
    if sp.padding == "same":
        if ss != (1, 1):
            raise Refusal(f"p=same is not supported for strided convolutions (s={ss[0]}x{ss[1]}), "
                           "as in torch")
        totals = (ds[0] * (ks[0] - 1), ds[1] * (ks[1] - 1))
        return [(t // 2, t - t // 2) for t in totals]  # torch puts the odd pixel after
    if sp.padding == "valid":
        return [(0, 0), (0, 0)]
    if sp.padding != SOLVE:
        return [(sp.padding[0], sp.padding[0]), (sp.padding[1], sp.padding[1])]
    row.options, solved = {}, []
    for a in range(2):
        target = sp.target[a] if sp.target else None
        if sp.padding_mode is PaddingMode.REFLECT:
            limit = sizes[a] - 1
        elif sp.padding_mode is PaddingMode.CIRCULAR:
            limit = sizes[a]
        else:
            limit = ds[a] * (ks[a] - 1) + ss[a] * (target or sizes[a])
        hint = "" if target or ss[a] != 1 else \
            "; p=same keeps the size with asymmetric padding (torch pads the odd pixel after)"
        p, row.options[AXES[a]] = _conv_solve(a, sizes[a], ks[a], ss[a], ds[a], limit, target, hint)
        solved.append(p)
    row.solved = {"p": solved}
    row.notes.append(f"p=? -> {pairs_text('p', solved)}")
    return [(solved[0], solved[0]), (solved[1], solved[1])]


def convt_pads(sp: ConvTSpec, row: Row, sizes: Pair) -> tuple[list[int], list[int]]:
    """Padding and output_padding per axis, solving ``p=?`` and/or ``op=?`` (default target: H*s)."""
    ks, ss, ds = sp.kernel_size, sp.stride, sp.dilation
    if sp.padding != SOLVE and sp.output_padding != SOLVE:
        return list(sp.padding), list(sp.output_padding)
    row.options, row.solved = {}, {}
    ps, ops = [0, 0], [0, 0]
    for a in range(2):
        limit = max(ss[a], ds[a])  # output_padding must be < stride or < dilation
        p_range = range(min(ds[a] * (ks[a] - 1) + limit, MAX_INT) + 1) if sp.padding == SOLVE else \
            range(sp.padding[a], sp.padding[a] + 1)
        op_range = range(limit) if sp.output_padding == SOLVE else \
            range(sp.output_padding[a], sp.output_padding[a] + 1)
        names = [n for n, v in (("p", sp.padding), ("op", sp.output_padding)) if v == SOLVE]
        target = sp.target[a] if sp.target else None
        base = (sizes[a] - 1) * ss[a] + ds[a] * (ks[a] - 1) + 1  # the output at p = op = 0
        (ps[a], ops[a]), row.options[AXES[a]] = solve(
            a, target, sizes[a] * ss[a],
            lambda pq, a=a: convt_axis(sizes[a], ks[a], ss[a], pq[0], pq[1], ds[a]),  # type: ignore[misc]
            convt_candidates(base, p_range, op_range, target or sizes[a] * ss[a]),
            lambda pq, names=names: {n: pq[0] if n == "p" else pq[1] for n in names},  # type: ignore[misc]
            f"{sizes[a]}*{ss[a]}")
    if sp.output_padding == SOLVE:
        valid = "; ".join(f"{AXES[a]}: {_listed(max(ss[a], ds[a]))}" for a in range(2))
        row.notes.append(f"valid output_padding (op < s or op < d): {valid}")
    for name, given, values in (("p", sp.padding, ps), ("op", sp.output_padding, ops)):
        if given == SOLVE:
            row.solved[name] = values
    row.notes.append("solved: " + ", ".join(pairs_text(k, v) for k, v in row.solved.items()))
    return ps, ops


def _listed(n: int) -> str:
    """``[0, 1, 2]``: the values ``range(n)``, written out when few."""
    return str(list(range(n))) if n <= 16 else f"[0, 1, ..., {n - 1}]"


def _first(pred: Callable[[int], bool], lo: int, hi: int) -> int:
    """The smallest ``x`` in ``[lo, hi]`` with ``pred(x)`` for a ``pred`` false then true; ``hi + 1`` if none."""
    while lo <= hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid - 1
        else:
            lo = mid + 1
    return lo


def monotone_candidates(fn: Callable[[int], int], limit: int, want: int) -> list[int]:
    """The paddings of ``0..limit`` that :func:`solve` with ``increasing=True`` would look at, for an ``fn``
    that never decreases: the same answer and options, from at most ~70 candidates whatever ``limit`` is.

    A hit: the window of options around the first padding that gives ``want`` (and where the walk would have
    stopped). No hit: both sides of where ``fn`` passes ``want``; on the left, the first few paddings of each
    of the nearest output values (with a stride, several paddings give the same output and the walk's sort
    keeps the first ones).
    """
    first = _first(lambda p: fn(p) >= 1, 0, limit)  # fn(p) < 1: not a valid padding
    if first > limit:
        return []
    at = _first(lambda p: fn(p) >= want, first, limit)
    over = at if at > limit or fn(at) > want else _first(lambda p: fn(p) > want, at, limit)
    if at < over:  # a hit: the walk stops at the first output > want at least 4 options past it
        start = first + max(0, at - first - MAX_OPTIONS // 2)
        stop = min(start + MAX_OPTIONS - 1, max(at + MAX_OPTIONS // 2, over), limit)
        return list(range(start, stop + 1))
    right = list(range(at, min(limit, max(at, first + MAX_OPTIONS // 2)) + 1))
    left: list[int] = []
    q = at - 1
    for _ in range(MAX_OPTIONS):
        if q < first:
            break
        start = _first(lambda p, v=fn(q): fn(p) >= v, first, q)  # type: ignore[misc]
        left[:0] = range(start, min(start + MAX_OPTIONS, q + 1))
        q = start - 1
    return left + right


def convt_candidates(base: int, ps: range, qs: range, want: int) -> list[tuple[int, int]]:
    """The ``(p, op)`` pairs of ``ps x qs`` (in that order) that :func:`solve` would look at, where the output
    is ``base - 2p + op``: a few dozen, whatever the ranges.

    A hit: the first pair giving ``want`` and the valid pairs (output >= 1) next to it in walk order. No hit:
    for each of the output values nearest ``want``, the first pairs that give it.
    """
    def row(p: int) -> range:  # the valid op of padding p
        return range(max(qs.start, 1 - base + 2 * p), qs.stop)

    def forward(p: int, q: int) -> Iterator[tuple[int, int]]:
        yield from ((p, x) for x in range(max(q, row(p).start), qs.stop))
        for pp in range(p + 1, ps.stop):
            r = row(pp)
            if not r:
                return  # outputs only shrink as p grows
            yield from ((pp, x) for x in r)

    def backward(p: int, q: int) -> Iterator[tuple[int, int]]:
        yield from ((p, x) for x in reversed(range(row(p).start, min(q, qs.stop - 1) + 1)))
        for pp in range(p - 1, ps.start - 1, -1):
            yield from ((pp, x) for x in reversed(row(pp)))

    def pairs_for(v: int) -> list[tuple[int, int]]:  # the first pairs whose output is v
        lo = max(ps.start, -(-(base - v + qs.start) // 2))
        hi = min(ps.stop - 1, (base - v + qs.stop - 1) // 2)
        return [(p, v - base + 2 * p) for p in range(lo, min(hi, lo + MAX_OPTIONS - 1) + 1)]

    hit = pairs_for(want)[:1]
    if hit:
        p, q = hit[0]
        before = list(itertools.islice(backward(p, q - 1), MAX_OPTIONS // 2))
        after = list(itertools.islice(forward(p, q + 1), MAX_OPTIONS))
        return before[::-1] + hit + after
    top = base - 2 * ps.start + qs.stop - 1
    low = max(1, base - 2 * (ps.stop - 1) + qs.start)
    if not ps or not qs or top < low:
        return []
    centre = min(max(want, low), top)
    values = sorted(range(max(low, centre - 3 * MAX_OPTIONS), min(top, centre + 3 * MAX_OPTIONS) + 1),
                    key=lambda v: abs(v - want))[: 3 * MAX_OPTIONS]
    return sorted({pq for v in values for pq in pairs_for(v)})
