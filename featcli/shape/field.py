"""Where one output value looks in the input: the box of input pixels it sees (its receptive field).

A :class:`Field` is the affine map from an output position to its box: output ``(y, x)`` sees rows
``start_y + y * jump_y`` up to ``+ size_h`` (and columns alike). A sliding window (k, s, p, d) after a field
``F`` gives ``start - p * jump``, ``jump * s`` and ``size + (k - 1) * d * jump``; a stage that keeps positions
(relu, bn, ...) keeps ``F``. Boxes may reach past the image (that part is padding).

:func:`field_of` walks a stage stack; :func:`network_field` walks a network's layer rows
(:class:`featcli.models.layers.LayerRecord`, read by their attributes: this layer imports no route) back
through each row's ``sources`` to the input, taking merges (``add``, ``mul``) as the union of their operands'
boxes. Whatever it cannot place exactly (transposed convs, adaptive pools, upsampling, linear layers, a row
without a stage or without known sources, a channel that only sees one operand of a ``cat``) has no box:
None, never a wrong one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featcli.shape.report import ShapeReport, StageReport

__all__ = ["Field", "field_of", "has_fields", "network_field", "stack_field"]

#: Ops that slide a window (their ``config`` has ``k``, ``s``, ``p`` and maybe ``d``).
_WINDOWS = frozenset({"conv", "maxpool", "avgpool"})
#: Shape rules that keep every position where it is (relu, bn, magnitude, ...).
_SAME_RULES = frozenset({"same", "bn", "magnitude", "prelu"})
#: Merges whose output position reads the same position of every operand.
_MERGES = frozenset({"add", "mul", "cat"})

Pair = tuple[int, int]


@dataclass(frozen=True)
class Field:
    """The receptive field of every output position of a layer, as an affine map to input boxes.

    >>> f = Field((0, 0), (1, 1), (1, 1)).window((3, 3), (2, 2), (1, 1), (1, 1))
    >>> f, f.box(2, 0)
    (Field(start=(-1, -1), jump=(2, 2), size=(3, 3)), (3, -1, 6, 2))
    """

    start: Pair  #: ``(sy, sx)``: the top-left input pixel of output (0, 0)'s box
    jump: Pair  #: ``(jy, jx)``: input pixels between adjacent outputs
    size: Pair  #: ``(h, w)``: the box's size in input pixels

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """The box ``(top, left, bottom, right)`` (bottom and right exclusive) that output ``(y, x)`` sees; it
        may reach outside the image."""
        top, left = self.start[0] + y * self.jump[0], self.start[1] + x * self.jump[1]
        return top, left, top + self.size[0], left + self.size[1]

    def window(self, k: Pair, s: Pair, before: Pair, d: Pair) -> Field:
        """This field followed by a sliding window of size ``k``, stride ``s``, padding ``before`` (top, left)
        and dilation ``d``."""
        return Field((self.start[0] - before[0] * self.jump[0], self.start[1] - before[1] * self.jump[1]),
                     (self.jump[0] * s[0], self.jump[1] * s[1]),
                     (self.size[0] + (k[0] - 1) * d[0] * self.jump[0], self.size[1] + (k[1] - 1) * d[1] * self.jump[1]))

    def union(self, other: Field) -> Field | None:
        """The field of a position that reads this field's and ``other``'s same position (an addition), or
        None when their jumps differ (the union is then no affine map)."""
        if self.jump != other.jump:
            return None
        start = (min(self.start[0], other.start[0]), min(self.start[1], other.start[1]))
        end = (max(self.start[0] + self.size[0], other.start[0] + other.size[0]),
               max(self.start[1] + self.size[1], other.start[1] + other.size[1]))
        return Field(start, self.jump, (end[0] - start[0], end[1] - start[1]))

    def to_list(self) -> list[list[int]]:
        """``[[sy, sx], [jy, jx], [h, w]]`` (JSON)."""
        return [list(self.start), list(self.jump), list(self.size)]

    @classmethod
    def from_list(cls, d: Sequence[Sequence[int]]) -> Field:
        (sy, sx), (jy, jx), (h, w) = d
        return cls((int(sy), int(sx)), (int(jy), int(jx)), (int(h), int(w)))


#: The field of the input itself: each pixel sees itself.
IDENTITY = Field((0, 0), (1, 1), (1, 1))


def _kind(row: StageReport) -> str | None:
    """``window``, ``same`` or None (a stage whose positions are not a sliding window of its input)."""
    from featcli.stages.registry import REGISTRY

    if row.branch is not None or row.reads:
        return None
    op = row.resolved.op
    if op.value in _WINDOWS:
        return "window"
    return "same" if REGISTRY[op].shape_rule in _SAME_RULES else None


def _window(f: Field, row: StageReport) -> Field:
    """``f`` followed by the sliding window of ``row`` (a conv or pool: its resolved ``config``)."""
    cfg = row.config
    p = cfg["p"]
    before = (p[0][0], p[1][0]) if isinstance(p[0], list) else (p[0], p[1])
    d = cfg.get("d", [1, 1])
    return f.window((cfg["k"][0], cfg["k"][1]), (cfg["s"][0], cfg["s"][1]), before, (d[0], d[1]))


def has_fields(report: ShapeReport, stage: int) -> bool:
    """Whether every stage up to ``stage`` (1-based) is a sliding window or keeps positions, so that
    :func:`field_of` gives a box."""
    return all(_kind(row) is not None for row in report.stages[:stage])


def stack_field(report: ShapeReport, stage: int) -> Field | None:
    """The :class:`Field` of stage ``stage`` (1-based) of a stack, or None when a stage up to it is no sliding
    window (:func:`has_fields`)."""
    if not has_fields(report, stage):
        return None
    f = IDENTITY
    for row in report.stages[:stage]:
        if _kind(row) == "window":
            f = _window(f, row)
    return f


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
    f = stack_field(report, stage)
    return f.box(y, x) if f is not None else None


@functools.lru_cache(maxsize=1024)
def _stage_row(spec: str, in_shape: tuple[int, ...]) -> StageReport | None:
    """The shape engine's row of the stage ``spec`` on an input of ``in_shape`` (None where it refuses)."""
    from featcli.errors import FeatcliError
    from featcli.shape.infer import infer
    from featcli.stages.spec import parse_stage

    try:
        return infer(in_shape, [parse_stage(spec)]).stages[0]
    except FeatcliError:
        return None


#: A merge by the row's type where it has no stage: ONNX op types and aten / torch function names.
_MERGE_TYPES = {"Add": "add", "Sum": "add", "Mul": "mul", "Concat": "cat", "add": "add", "add_": "add",
                "mul": "mul", "mul_": "mul", "cat": "cat"}
#: Arithmetic that keeps positions when its one source meets only constants (``(x - mean) / std``, ``x * scale``).
_ARITHMETIC = frozenset({"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "Add", "Sub", "Mul", "Div"})


def _merge_op(r: Any) -> str | None:
    """``add``, ``mul`` or ``cat`` for a row that merges its sources position by position (a stage ``add:b``,
    an ONNX ``Add``, an aten ``add``), else None."""
    from featcli.errors import FeatcliError
    from featcli.stages.spec import parse_stage

    if r.spec is None:
        return _MERGE_TYPES.get(r.type)
    try:
        op = parse_stage(r.spec).op.value
    except FeatcliError:
        return None
    return op if op in _MERGES else None


def _merged(r: Any, merge: str, shapes: list[Any]) -> bool:
    """Whether row ``r`` of type ``merge`` puts its operands of ``shapes`` together position by position: an
    ``add``/``mul`` of equal shapes (no broadcast gate), a ``cat`` along the channels."""
    out = tuple(r.shapes[0])
    if any(s is None or len(s) != 4 for s in shapes) or len(out) != 4:
        return False
    if merge != "cat":
        return all(tuple(s) == out for s in shapes)
    return all(tuple(s[:1]) + tuple(s[2:]) == out[:1] + out[2:] for s in shapes) and \
        sum(int(s[1]) for s in shapes) == out[1]


def network_field(rows: Sequence[Any], row: int, image: Sequence[int] | None = None) -> Field | None:
    """The :class:`Field` of layer row ``row`` (1-based) of a network's rows (each with ``index``, ``type``,
    ``spec``, ``ok``, ``in_shape``, ``shapes`` and ``sources``), found by walking ``sources`` back to the input
    (0, of shape ``image`` where given; else a reading row's first input is taken for it); None where a row on
    the way cannot be placed exactly (see the module).

    A ``cat`` along channels gives each of its channels the field of its own operand only: the union is exact
    again only after a conv that mixes every channel (``g=1``), so a row reached from a ``cat`` through
    per-channel layers alone has no box.
    """
    by_index = {int(r.index): r for r in rows}
    placed: dict[int, tuple[Field, bool] | None] = {0: (IDENTITY, False)}  # (field, per-channel since a cat)
    for i in sorted(j for j in by_index if 0 < j <= row):  # sources come before their readers
        placed[i] = _place(by_index[i], lambda j, i=i: placed.get(j) if j < i else None, by_index,
                           tuple(image) if image is not None else None)
    got = placed.get(row)
    return got[0] if got is not None and not got[1] else None


def _spatial(shape: Any) -> tuple[int, int] | None:
    return (int(shape[2]), int(shape[3])) if shape is not None and len(shape) == 4 else None


def _place(r: Any, walk: Any, by_index: dict[int, Any], image: tuple[int, ...] | None) -> tuple[Field, bool] | None:
    """Row ``r``'s ``(field, per-channel since a cat)`` from its sources' (``walk``), or None."""
    sources = getattr(r, "sources", None)
    if not sources or len(r.shapes) != 1 or _spatial(r.shapes[0]) is None:
        return None

    def source_shape(i: int) -> Any:
        if i == 0:  # without ``image``, the first operand's shape: where the image is not first, checks fail
            return image if image is not None else r.in_shape
        return by_index[i].shapes[0] if i in by_index and len(by_index[i].shapes) == 1 else None

    if len(sources) == 1 and r.type in _ARITHMETIC and source_shape(sources[0]) is not None and \
            tuple(source_shape(sources[0])) == tuple(r.shapes[0]):
        kept: tuple[Field, bool] | None = walk(sources[0])  # the other operands are constants: positions kept
        return kept
    merge = _merge_op(r)
    if merge is not None:
        if len(sources) < 2 or not _merged(r, merge, [source_shape(i) for i in sources]):
            return None  # a broadcast (a gate of 1x1 maps), another axis
        parts = [walk(i) for i in sources]
        f: Field | None = parts[0][0] if parts[0] is not None else None
        for p in parts[1:]:
            f = f.union(p[0]) if f is not None and p is not None else None
        if f is None:
            return None
        return f, merge == "cat" or any(p is not None and p[1] for p in parts)
    if r.spec is None or r.ok is not True or r.in_shape is None:
        return None
    if len(sources) != 1 or source_shape(sources[0]) is None or tuple(source_shape(sources[0])) != tuple(r.in_shape):
        return None
    stage = _stage_row(r.spec, tuple(int(d) for d in r.in_shape))
    if stage is None or stage.branch is not None or stage.reads or tuple(stage.out_shape) != tuple(r.shapes[0]):
        return None
    kind = _kind(stage)
    if kind is None or (stage.resolved.op.value == "conv" and stage.config.get("pm", "zeros") != "zeros"):
        return None  # a reflected or circular padding reads pixels inside the image, elsewhere than the box
    got = walk(sources[0])
    if got is None:
        return None
    f, per_channel = got
    if kind == "same":
        return f, per_channel
    mixes = stage.resolved.op.value == "conv" and stage.config.get("g", 1) == 1
    return _window(f, stage), per_channel and not mixes
