"""A network's answer: the top-k classes of a score vector, with probabilities.

Shared by every route that runs a whole network (``featcli run --model``, ``featcli eval``): a featcli model
file, a PyTorch module, an ONNX file or an exported program all end in the same :class:`Prediction` rows,
the same table and the same JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Prediction", "is_scores", "top_k"]


@dataclass(frozen=True)
class Prediction:
    """One of the top-k classes: its rank (1 = best), index in the score vector, label and probability."""

    rank: int
    index: int
    label: str
    probability: float

    def record(self) -> dict[str, Any]:
        return {"rank": self.rank, "index": self.index, "label": self.label, "probability": self.probability}


def is_scores(shape: Sequence[int]) -> bool:
    """Whether an output of ``shape`` is one score per class for one image: ``(1, K)`` or ``(1, K, 1, 1)``, K >= 2.

    >>> is_scores((1, 10)), is_scores((1, 10, 1, 1)), is_scores((1, 3, 8, 8)), is_scores((1, 1))
    (True, True, False, False)
    """
    dims = list(shape)
    while len(dims) > 2 and dims[-1] == 1:
        dims.pop()
    return len(dims) == 2 and dims[0] == 1 and dims[1] >= 2


def _probabilities(scores: Sequence[float]) -> list[float]:
    """``scores`` as probabilities: kept when they already are (non-negative, summing to 1), else softmax."""
    if all(0.0 <= s <= 1.0 for s in scores) and abs(sum(scores) - 1.0) < 1e-4:
        return [float(s) for s in scores]
    top = max(scores)
    exp = [math.exp(s - top) for s in scores]
    total = sum(exp)
    return [e / total for e in exp]


def top_k(scores: Sequence[float], labels: Sequence[str] | None = None, k: int = 5) -> list[Prediction]:
    """The ``k`` most probable classes of one score vector (logits or probabilities), best first.

    Ties keep the lower index first. ``labels`` names the classes (``class N`` where missing).

    >>> [(p.label, round(p.probability, 3)) for p in top_k([2.0, 0.0, 1.0], ["cat", "dog", "fox"], k=2)]
    [('cat', 0.665), ('fox', 0.245)]
    """
    values = [float(s) for s in scores]
    probs = _probabilities(values)
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))[: max(k, 0)]
    names = list(labels or [])
    return [Prediction(r, i, names[i] if i < len(names) else f"class {i}", probs[i])
            for r, i in enumerate(order, 1)]
