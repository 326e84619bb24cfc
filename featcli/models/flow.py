"""The module route's data flow: which row made each tensor, so a row knows the rows it reads.

:class:`Flow` maps each row's output tensors to the row (:attr:`featcli.models.layers.LayerRecord.sources`),
keyed by ``id`` and checked by a weak reference (an id is reused once its tensor is freed; the map keeps
nothing alive). The network's input is row 0; the model's parameters and buffers, and tensors made from
nothing (``torch.zeros``), are constants, which no row counts as a source. An alias of a row's output
(``x.detach()``, ``x.contiguous()``, ``x.data``: a call that is no row and returns the same values in the same
places; outside inference mode, a view of it that keeps the positions) counts as that row; a tensor
changed in place by a call that is no row (``x[...] = y``, ``x.copy_(y)``) is unknown from then on, and a row
reading an unknown tensor has ``sources`` None.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["ALIASES", "CONSTANTS", "Flow", "constants"]

#: Calls that are no row and return their argument's values, positions kept (an alias or a copy).
ALIASES = frozenset({"detach", "contiguous", "clone", "to", "cpu", "cuda", "float", "double", "half", "bfloat16",
                     "type", "type_as"})
#: Calls that are no row and make a tensor from nothing (a constant).
CONSTANTS = frozenset({"zeros", "ones", "empty", "full", "arange", "linspace", "eye", "tensor", "as_tensor",
                       "new_tensor", "new_zeros", "new_ones", "new_empty", "new_full", "zeros_like", "ones_like",
                       "empty_like", "full_like"})
#: Calls that are no row and change their first argument in place.
_WRITES = frozenset({"setitem", "copy", "set", "fill", "zero"})

_CONSTANT = -1  #: the row of a constant: read by none as data
_UNKNOWN = -2  #: a tensor whose values no row accounts for


def tensors(values: Iterable[Any]) -> Iterator[Any]:
    """The tensors among ``values`` (lists, tuples and dicts opened), in order."""
    import torch

    for v in values:
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from tensors(v)
        elif isinstance(v, dict):
            yield from tensors(v.values())


def constants(model: Any) -> dict[int, Any]:
    """The weak references of ``model``'s parameters and buffers by id: what a :class:`Flow` counts as constants
    (made once per model: a forward only looks them up)."""
    return {id(t): weakref.ref(t) for t in (*model.parameters(), *model.buffers())}


class Flow:
    """One forward's map from tensors to the rows that made them (see the module)."""

    def __init__(self, x: Any, constants: dict[int, Any] | None = None) -> None:
        self.made: dict[int, tuple[Any, int]] = {}
        self.constants = constants or {}  #: the model's parameters and buffers (:func:`constants`), kept per model
        self.note([x], 0)

    def note(self, outputs: Iterable[Any], row: int, *, inner: bool = False) -> None:
        """``outputs`` were made by ``row``; ``inner``: by a container, so a tensor a row inside it made stays
        that row's."""
        for t in outputs:
            if inner and self._get(t) is not None:
                continue
            self.made[id(t)] = (weakref.ref(t), row)

    def written(self, t: Any) -> None:
        """``t`` was changed in place: where it is a part of a larger tensor (a view: ``y[:, :2].zero_()``), the
        tensors over the same memory are unknown now (found by their storage: inference mode keeps no view
        bases)."""
        base = getattr(t, "_base", None)
        if base is not None:
            self.note([base], _UNKNOWN)
        try:
            storage = t.untyped_storage()
            if t.numel() * t.element_size() >= storage.nbytes():
                return  # the whole memory: the tensor itself, noted by its caller
            at = storage.data_ptr()
            for key, (ref, row) in list(self.made.items()):
                other = ref()
                if other is not None and other is not t and row >= 0 and other.untyped_storage().data_ptr() == at:
                    self.made[key] = (ref, _UNKNOWN)
        except RuntimeError:  # a sparse or meta tensor has no storage to compare
            return

    def _get(self, t: Any) -> int | None:
        got = self.made.get(id(t))
        if got is not None and got[0]() is t:
            return got[1]
        ref = self.constants.get(id(t))
        return _CONSTANT if ref is not None and ref() is t else None

    def row_of(self, t: Any) -> int | None:
        """The row that made ``t`` (-1 for a constant), or None where unknown."""
        row = self._get(t)
        if row is None:
            base = getattr(t, "_base", None)  # a view: the row of its base if it keeps the base's positions
            if base is not None and t.dim() == base.dim() == 4 and t.shape[2:] == base.shape[2:] and \
                    t.stride()[2:] == base.stride()[2:]:
                row = self._get(base)
        return None if row is None or row == _UNKNOWN else row

    def sources(self, values: Iterable[Any]) -> tuple[int, ...] | None:
        """The rows the tensors among ``values`` come from, in order (constants left out), or None when one is
        unknown."""
        out = []
        for t in tensors(values):
            row = self.row_of(t)
            if row is None:
                return None
            if row != _CONSTANT:
                out.append(row)
        return tuple(out)

    def other_call(self, name: str, args: tuple[Any, ...], out: Any) -> None:
        """A call that is no row (``name``: the function's name without underscores) ran: an alias keeps its
        argument's row, a constant is one, an in-place write makes its argument unknown."""
        import torch

        if name in CONSTANTS:
            self.note(tensors([out]), _CONSTANT)
            return
        if name in _WRITES:
            first = next(tensors(args), None)
            if first is not None:
                self.note([first], _UNKNOWN)
                self.written(first)
            return
        if not isinstance(out, torch.Tensor):
            return
        first = next(tensors(args), None)
        if first is None or out is first:
            return
        if name in ALIASES or _same_places(out, first):
            row = self.row_of(first)
            self.note([out], row if row is not None else _UNKNOWN)


def _same_places(a: Any, b: Any) -> bool:
    """``a`` holds ``b``'s values in the same places (``b.data``): the same memory, shape and strides."""
    try:
        return bool(a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride())
    except RuntimeError:  # a sparse or meta tensor has no data pointer
        return False
