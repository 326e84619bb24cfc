"""The figures of ``featcli diff``: how far two outputs of one layer, or two weight tensors, are apart.

All arithmetic is NumPy on whole arrays in float64 (one layer at a time, so memory stays that of one layer).
The tolerance is NumPy's ``allclose`` convention: an element is beyond it when ``|a - b| > atol + rtol * |b|``
(B is the reference); NaN against NaN and an infinity against the same infinity agree. Without a given
``atol`` it is :data:`ATOL_OF_MAX` times the layer's largest ``|b|``: float32 error grows with a network's depth
and with the size of its values, and an element near zero in a layer of large values carries the error of the
large ones (a faithful ONNX export of ResNet-50 differs by up to 1.8e-4 where its values reach tens, 3e-6 of the
layer's scale); a fixed ``atol`` that allows that would hide a total change in a layer of small values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ATOL_OF_MAX", "RTOL", "Figures", "ParamDiff", "ParamRow", "compare", "param_diff"]

#: Defaults fit float32 computed two ways (another runtime, another kernel order): ``atol`` 1e-5 of the layer's
#: largest ``|b|`` (about 80 float32 epsilons of its scale) and ``rtol`` 1e-4 (about 800 epsilons); torch.testing's
#: float32 defaults (a fixed ``atol`` 1e-5, ``rtol`` 1.3e-6) are tighter than two runtimes agree on a deep network.
ATOL_OF_MAX, RTOL = 1e-5, 1e-4


@dataclass(frozen=True)
class Figures:
    """One layer on one image: how far A's output is from B's.

    Attributes:
        max_abs: the largest ``|a - b|``.
        max_rel: ``max_abs`` over the largest ``|b|`` (the error in units of the layer's own scale; 0 when both
            are 0, inf when only B is).
        cosine: the cosine of the angle between the two outputs as vectors (1.0 when both are all zeros).
        beyond: the share of elements past the tolerance.
        count: how many elements were compared.
        atol: the absolute tolerance applied (given, or :data:`ATOL_OF_MAX` of the largest ``|b|``).
    """

    max_abs: float
    max_rel: float
    cosine: float
    beyond: float
    count: int
    atol: float = 0.0

    @property
    def agree(self) -> bool:
        return self.beyond == 0.0

    def record(self) -> dict[str, Any]:
        return {"max_abs": _num(self.max_abs), "max_rel": _num(self.max_rel), "cosine": _num(self.cosine),
                "beyond": self.beyond, "count": self.count, "atol": self.atol}


def _num(v: float) -> float | str:
    """A float for JSON: NaN and infinities as text (JSON has none)."""
    return v if v == v and abs(v) != float("inf") else str(v)


def compare(a: Any, b: Any, atol: float | None = None, rtol: float = RTOL) -> Figures:
    """The :class:`Figures` of two arrays of one shape (``b`` the reference; ``atol`` None: :data:`ATOL_OF_MAX`
    of its largest finite ``|b|``)."""
    import numpy as np

    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return Figures(0.0, 0.0, 1.0, 0.0, 0, atol or 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        scale = float(np.abs(y[np.isfinite(y)]).max(initial=0.0))
        tol = ATOL_OF_MAX * scale if atol is None else atol
        d = np.abs(x - y)
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        d[same] = 0.0
        close = same | (d <= tol + rtol * np.abs(y))
        finite = np.isfinite(d)
        max_abs = float(d.max()) if finite.all() else float("inf") if not np.isnan(d).any() else float("nan")
        max_rel = max_abs / scale if scale else (0.0 if max_abs == 0 else float("inf"))
        nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
        cosine = 1.0 if nx == 0 and ny == 0 else float(np.dot(x, y) / (nx * ny)) if nx and ny else 0.0
    return Figures(max_abs, max_rel, cosine, float(1.0 - close.mean()), int(x.size), tol)


@dataclass(frozen=True)
class ParamRow:
    """One weight tensor both sides have: its shapes, and how far B's is from A's."""

    name: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    max_abs: float | None  #: None when the shapes differ
    rel_norm: float | None  #: ``||b - a|| / ||a||`` (inf when ``a`` is all zeros and ``b`` is not)

    @property
    def changed(self) -> bool:
        return self.shape_a != self.shape_b or bool(self.max_abs)

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "shape_a": list(self.shape_a), "shape_b": list(self.shape_b),
                "changed": self.changed, "max_abs": None if self.max_abs is None else _num(self.max_abs),
                "rel_norm": None if self.rel_norm is None else _num(self.rel_norm)}


@dataclass(frozen=True)
class ParamDiff:
    """Two sides' weight tensors by name: every tensor both have, and those only one has."""

    rows: tuple[ParamRow, ...]
    only_a: tuple[str, ...]
    only_b: tuple[str, ...]

    @property
    def changed(self) -> list[ParamRow]:
        return [r for r in self.rows if r.changed]

    def record(self) -> dict[str, Any]:
        return {"tensors": len(self.rows), "changed": [r.record() for r in self.changed],
                "only_a": list(self.only_a), "only_b": list(self.only_b)}


def param_diff(pa: Mapping[str, Any] | None, pb: Mapping[str, Any] | None) -> ParamDiff | None:
    """The :class:`ParamDiff` of two sides' named tensors; None when either has none or they share no name
    (two different architectures, or names an exporter made up)."""
    import numpy as np

    if not pa or not pb or not set(pa) & set(pb):
        return None
    rows = []
    for name in [n for n in pa if n in pb]:
        a, b = np.asarray(pa[name], np.float64), np.asarray(pb[name], np.float64)
        if a.shape != b.shape:
            rows.append(ParamRow(name, a.shape, b.shape, None, None))
            continue
        d = b - a
        change = float(np.abs(d).max(initial=0.0))
        na, nd = float(np.linalg.norm(a)), float(np.linalg.norm(d))
        rows.append(ParamRow(name, a.shape, b.shape, change, nd / na if na else (0.0 if nd == 0 else float("inf"))))
    return ParamDiff(tuple(rows), tuple(n for n in pa if n not in pb), tuple(n for n in pb if n not in pa))
