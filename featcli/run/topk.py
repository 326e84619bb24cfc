"""One image's best K positions per channel, found fast: the selection under ``featcli top``'s search.

:func:`top_positions` takes each row's K largest values of a ``(C, N)`` map, ties in position order. A
:class:`Floor` remembers, per channel, the K-th best value of the images a runner has already searched: a value
strictly below it can never enter the answer, so later images only look at the positions at or above it (one
comparison pass instead of a ``torch.topk`` over every position). Rows that keep fewer than K are padded with
``-inf`` at position ``-1`` (:data:`PAD`), which the search drops. Which images ran first only changes how
much each image keeps, never the answer: everything the answer needs is at or above every floor.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["PAD", "Floor", "top_positions"]

#: The position of a padding entry (a row with fewer than K values at or above its floor).
PAD = -1


class Floor:
    """Per channel, the K-th best value seen so far by one runner (``-inf`` until K values are seen); updated
    from each image's selection, under a lock (runners finish images on several threads)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.best: Any = None  # (C, <=k) float32, each row descending
        self.lock = threading.Lock()

    def get(self, channels: int) -> Any:
        """The floor per channel (float32, ``-inf`` where fewer than K values were seen)."""
        import numpy as np

        best = self.best
        if best is None or best.shape[0] != channels or best.shape[1] < self.k:
            return np.full(channels, -np.inf, np.float32)
        return best[:, self.k - 1]

    def add(self, values: Any) -> None:
        """Fold one image's selected values (C, k), padding included (``-inf`` raises nothing)."""
        import numpy as np

        with self.lock:
            if self.best is not None and self.best.shape[0] == values.shape[0]:
                values = np.concatenate([self.best, values], axis=1)
            self.best = -np.sort(-values, axis=1)[:, : self.k]


def top_positions(maps: Any, k: int, floor: Any = None) -> tuple[Any, Any]:
    """Each row's ``k`` largest values of ``maps`` (C, N) float32 at or above ``floor`` (C,) (None: all) and
    their positions, largest first, equal values in position order; padded with ``-inf`` at :data:`PAD`.
    Rows with no floor take their k-th value from ``torch.topk`` (4x faster than ``np.partition``); the others
    look only at the positions at or above their floor.

    >>> import numpy as np
    >>> v, p = top_positions(np.array([[1., 3., 3., 0., 3.]], np.float32), 2)
    >>> v.tolist(), p.tolist()
    ([[3.0, 3.0]], [[1, 2]])
    >>> v, p = top_positions(np.array([[1., 3., 0., 2.]], np.float32), 3, np.array([2.], np.float32))
    >>> v.tolist(), p.tolist()
    ([[3.0, 2.0, -inf]], [[1, 3, -1]])
    """
    import numpy as np
    import torch

    c, n = maps.shape
    k = min(k, n)
    lows = np.full(c, -np.inf, np.float32) if floor is None else np.asarray(floor, np.float32)
    open_rows = np.flatnonzero(np.isneginf(lows))
    thr = np.empty(c, np.float32)
    if len(open_rows):
        thr[open_rows] = torch.from_numpy(np.ascontiguousarray(maps[open_rows])).topk(k, dim=1).values[:, -1].numpy()
    pos = np.full((c, k), PAD, np.int64)
    for ch in range(c):  # one channel at a time: the count at or above the floor differs per channel
        row = maps[ch]
        cand = np.flatnonzero(row >= (thr[ch] if np.isneginf(lows[ch]) else lows[ch]))
        v = row[cand]
        if not np.isneginf(lows[ch]):
            above = v > lows[ch]
            if np.count_nonzero(above) >= k:  # the k-th best is above the floor: find it among those
                top = v[above]
                thr[ch] = np.partition(top, len(top) - k)[len(top) - k]
            else:
                thr[ch] = lows[ch]
        over = v > thr[ch]
        cand = np.concatenate([cand[over], cand[v == thr[ch]][: k - int(np.count_nonzero(over))]])
        pos[ch, : len(cand)] = cand[np.lexsort((cand, -row[cand]))]
    values = np.where(pos >= 0, np.take_along_axis(maps, np.maximum(pos, 0), axis=1), np.float32(-np.inf))
    return values.astype(np.float32, copy=False), pos
