"""The solver answers in bounded time and memory, with exactly the answers of a walk over every candidate."""

from __future__ import annotations

import functools
import random
import time

import pytest

from featcli.errors import ShapeError, SpecError
from featcli.shape.axis import conv_axis, convt_axis, pool_axis
from featcli.shape.infer import infer
from featcli.shape.solve import convt_candidates, monotone_candidates, solve
from featcli.shape.state import Refusal
from featcli.stages.grammar import MAX_INT
from featcli.stages.spec import parse_stage


def _answer(fn, candidates, want):  # type: ignore[no-untyped-def]
    try:
        return solve(0, want, want, fn, candidates, lambda p: {"p": p}, "x")
    except Refusal as exc:
        return str(exc)


def _walk(fn, candidates, want, increasing):  # type: ignore[no-untyped-def]
    try:
        return solve(0, want, want, fn, candidates, lambda p: {"p": p}, "x", increasing=increasing)
    except Refusal as exc:
        return str(exc)


def test_monotone_candidates_give_the_walks_answers() -> None:
    rng = random.Random(5)
    for _ in range(3000):
        size, k, s, d = rng.randint(1, 40), rng.randint(1, 9), rng.randint(1, 5), rng.randint(1, 3)
        limit, want = rng.randint(0, 40), rng.randint(1, 60)
        ceil = rng.random() < 0.5
        if rng.random() < 0.5:
            fn = functools.partial(lambda p, a: conv_axis(a[0], a[1], a[2], p, p, a[3]), a=(size, k, s, d))
        else:
            fn = functools.partial(lambda p, a: pool_axis(a[0], a[1], a[2], p, a[3], a[4]), a=(size, k, s, d, ceil))
        full = _walk(fn, range(limit + 1), want, True)
        assert _answer(fn, monotone_candidates(fn, limit, want), want) == full, (size, k, s, d, limit, want)


def test_convt_candidates_give_the_walks_answers() -> None:
    rng = random.Random(6)
    for _ in range(3000):
        size, k, s, d = rng.randint(1, 12), rng.randint(1, 6), rng.randint(1, 4), rng.randint(1, 3)
        ps = range(d * (k - 1) + max(s, d) + 1) if rng.random() < 0.7 else range(p := rng.randint(0, 4), p + 1)
        qs = range(max(s, d)) if rng.random() < 0.7 else range(q := rng.randint(0, 2), q + 1)
        want = rng.randint(1, 50)
        fn = functools.partial(lambda pq, a: convt_axis(a[0], a[1], a[2], pq[0], pq[1], a[3]), a=(size, k, s, d))
        full = _walk(fn, [(p, q) for p in ps for q in qs], want, False)
        base = (size - 1) * s + d * (k - 1) + 1
        assert _answer(fn, convt_candidates(base, ps, qs, want), want) == full, (size, k, s, d, ps, qs, want)


@pytest.mark.parametrize("spec", [
    "maxpool:k=2147483647,p=?", "convt:k=1000,d=1000,p=?,op=?", "convt:k=2147483647,d=2147483647,p=?,op=?",
    "conv:k=2147483647,d=2147483647,p=?", "conv:k=3,p=?2147483647", "conv:k=3,s=7,p=?1000000,pm=reflect",
    "avgpool:k=2147483647,s=1,p=?2147483647", "convt:k=5,s=2147483647,p=?,op=?7",
])
def test_huge_solver_queries_answer_at_once(spec: str) -> None:
    # A hang guard (a full walk of 2**31 candidates takes minutes), in CPU time so a loaded machine passes.
    t0 = time.process_time()
    try:
        report = infer((1, 3, 64, 64), [parse_stage(spec)])
        assert all(p <= MAX_INT for p in report.stages[0].solved["p"])  # type: ignore[index]
    except ShapeError:
        pass
    assert time.process_time() - t0 < 2.0


@pytest.mark.parametrize(("spec", "fragment"), [
    ("conv:out=18446744073709551616", "out='18446744073709551616': out of range; expected an integer in "
                                      "[1, 2147483647]"),
    ("conv:out=" + "9" * 5000, "(5000 characters): out of range"),
    ("conv:k=3x" + "9" * 5000, "k='3x99999999...9999' (5002 characters): out of range"),
    ("conv:p=?" + "9" * 5000, "out of range"),
    ("linear:out=0", "out='0': must be at least 1"),
])
def test_huge_numbers_are_refused_at_parse_time(spec: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_stage(spec)
    assert fragment in str(info.value)
    assert len(str(info.value)) < 300


def test_sizes_torch_cannot_hold_are_refused() -> None:
    with pytest.raises(ShapeError, match="has a dimension over 2147483647"):
        infer((1, 1, MAX_INT, 8), [parse_stage("conv:k=1,p=1")])
    with pytest.raises(ShapeError, match="more than a torch tensor holds"):
        infer((MAX_INT, MAX_INT, MAX_INT, 8), [parse_stage("relu")])


def test_empty_output_is_reported_with_a_note() -> None:
    report = infer((2, 1, 32, 32), [parse_stage(t) for t in ("avgpool:k=3", "gap", "convt:out=8,k=2,s=2,p=1")])
    assert report.output == (2, 8, 0, 0)
    assert any("is empty" in n for n in report.stages[-1].notes)
    with pytest.raises(ShapeError, match="needs a non-empty input"):
        infer((2, 1, 1, 1), [parse_stage("convt:k=2,s=2,p=1"), parse_stage("maxpool:k=1")])
