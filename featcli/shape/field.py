"""Where one output value of a stage looks in the input: the box of input pixels it sees (its receptive field).

The box's size is the shape engine's receptive field (:attr:`StageReport.rf`) and its step the jump; where
it starts follows from the padding before each spatial stage: ``start -= pad_before * jump`` stage by stage.
Boxes may reach past the image (that part is padding). Stacks whose geometry is not a plain sliding window
(transposed convs, adaptive pools, linear layers, branches) have no box here: :func:`field_of` says None.
"""

from __future__ import annotations

from featcli.shape.report import ShapeReport, StageReport

__all__ = ["field_of", "has_fields"]

#: Ops that slide a window (their ``config`` has ``k``, ``s``, ``p`` and maybe ``d``).
_WINDOWS = frozenset({"conv", "maxpool", "avgpool"})
#: Shape rules that keep every position where it is (relu, bn, magnitude, ...).
_SAME_RULES = frozenset({"same", "bn", "magnitude", "prelu"})


def _kind(row: StageReport) -> str | None:
    """``window``, ``same`` or None (a stage whose positions are not a sliding window of its input)."""
    from featcli.stages.registry import REGISTRY

    if row.branch is not None or row.reads:
        return None
    op = row.resolved.op
    if op.value in _WINDOWS:
        return "window"
    return "same" if REGISTRY[op].shape_rule in _SAME_RULES else None


def has_fields(report: ShapeReport, stage: int) -> bool:
    """Whether every stage up to ``stage`` (1-based) is a sliding window or keeps positions, so that
    :func:`field_of` gives a box."""
    return all(_kind(row) is not None for row in report.stages[:stage])


def field_of(report: ShapeReport, stage: int, y: int, x: int) -> tuple[int, int, int, int] | None:
    """The input box ``(top, left, bottom, right)`` (bottom and right exclusive) that output ``(y, x)`` of
    stage ``stage`` (1-based) sees, in input pixels; it may reach outside the image. None when a stage up to
    ``stage`` is no sliding window (:func:`has_fields`).

    >>> from featcli.shape.infer import infer
    >>> from featcli.stages.spec import parse_stages
    >>> rep = infer((1, 1, 16, 16), parse_stages(["conv:k=3,p=1", "maxpool:k=2", "conv:k=3,s=2"]))
    >>> field_of(rep, 3, 0, 0), field_of(rep, 3, 1, 2), rep.stages[2].rf
    ((-1, -1, 7, 7), (3, 7, 11, 15), (8, 8))
    """
    if not has_fields(report, stage):
        return None
    start, jump = [0, 0], [1, 1]
    for row in report.stages[:stage]:
        if row.resolved.op.value not in _WINDOWS:
            continue
        cfg = row.config
        p = cfg["p"]
        before = (p[0][0], p[1][0]) if isinstance(p[0], list) else (p[0], p[1])
        start = [start[a] - before[a] * jump[a] for a in range(2)]
        jump = [jump[a] * cfg["s"][a] for a in range(2)]
    rf = report.stages[stage - 1].rf
    top, left = y * jump[0] + start[0], x * jump[1] + start[1]
    return top, left, top + int(rf[0]), left + int(rf[1])
