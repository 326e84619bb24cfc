"""What the compiled steps share: the walk state they move, what a step returns (a stage's row as JSON
texts, which :meth:`featcli.shape.fast.answers.Answers._write` puts together in the row's key order), the
JSON text of a shape and kept notes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

from featcli.shape.axis import dropped_note
from featcli.shape.fast.kept import Kept
from featcli.shape.state import WalkState
from featcli.stages.spec import Stage

__all__ = ["ConfigText", "Fields", "Step", "Walk", "dropped", "shape_text"]


class Walk(WalkState):
    """The walk state of the fast road: also the JSON text of the current shape, written once.

    ``shown`` is ``(shape, text)``, valid while ``shown[0] is self.shape``: a step writes its output's text,
    and the next step's input is that same tuple (a rule's output is a new tuple, so the text is written again).
    Whoever makes a :class:`Walk` sets ``shown`` (no ``__init__`` of its own: a query makes one).
    """

    __slots__ = ("shown",)
    shown: tuple[tuple[int, ...], str]


#: A stage's row as JSON texts, in the row's order: in, out, params, macs, ``"rf":..,"jump":..``, the
#: formula and notes arrays' contents, config, solved, options (index, spec, op and branch are the caller's).
Fields = tuple[str, str, int, int, str, str, str, str, str, str]
#: ``step(st, i)``: stage ``i``'s :data:`Fields`, with ``st`` moved on to its output; or None, with ``st``
#: untouched, to let the rule walk it.
Step = Callable[[Walk, int], Union[Fields, None]]  # noqa: UP007 - a runtime alias
#: The JSON text of a row's ``config`` for a stage at an input shape (the rule's own, encoded).
ConfigText = Callable[[Stage, tuple[int, ...]], str]


def shape_text(shape: tuple[int, ...]) -> str:
    """A shape as JSON text: ``[1,3,8,8]``."""
    return f"[{shape[0]},{shape[1]},{shape[2]},{shape[3]}]" if len(shape) == 4 else f"[{','.join(map(str, shape))}]"


def dropped(kept: Kept[int, str], a: int, size: int, k: int, s: int, pl: int, pr: int, d: int) -> str:
    """The JSON text of :func:`featcli.shape.axis.dropped_note` at an input ``size``, kept by size (``kept``:
    one stage's axis's own)."""
    text = kept.get(size)
    if text is None:
        text = kept.keep(size, f'"{dropped_note(a, size, k, s, pl, pr, d)}"')
    return text
