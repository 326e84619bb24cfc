"""The one bounded cache of the shape engine's fast road: :class:`Kept`.

``featcli shape -`` may run for days on ever new queries, so nothing it keeps may grow without end. Every
table the fast road keeps (compiled stages, configs, notes, solved paddings, fractions and their text, the
answers of repeated lines) is a :class:`Kept`: a plain dict for reading (``get``, ``in`` and ``[]`` stay C
calls on the hot path) whose :meth:`Kept.keep` empties it when full. Emptying costs nothing per entry and a
session's working set comes straight back; a least-recently-used order would cost every hit.

>>> k = Kept(2)
>>> k.keep("a", 1), k.keep("b", 2), k.keep("c", 3)
(1, 2, 3)
>>> dict(k)
{'c': 3}
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

__all__ = ["Kept"]


class Kept(dict[K, V]):
    """A dict of at most ``limit`` entries, filled through :meth:`keep`.

    Args:
        limit: how many entries it holds before :meth:`keep` starts it again (at least 1).
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = max(1, limit)

    def keep(self, key: K, value: V) -> V:
        """Remember ``value`` under ``key`` (emptying the table first when it is full) and return it."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
