"""The kernel's records: :class:`Kernel` (one named 2-D kernel) and :class:`ConvWeight` (one conv stage).

Plain frozen dataclasses; torch appears only in :class:`ConvWeight`'s type hints, so importing this module
costs nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featcli.kernels.matrix import Matrix, as_matrix, is_zero_sum, msum, rank1_factors

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Kernel:
    """A 2-D kernel: ``weights[i][j]`` multiplies the pixel at row offset ``i``, column ``j`` (no flip).

    >>> k = Kernel("d", ((-1.0, 0.0, 1.0),))
    >>> k.shape, k.sum, k.is_zero_sum
    ((1, 3), 0.0, True)
    """

    name: str
    weights: Matrix
    description: str = ""
    tags: tuple[str, ...] = ()
    source: str = ""
    normalisation: str = "none"  #: what was applied when loading: none, sum or signed
    origin: str = "built-in"  #: ``built-in``, the file it came from, ``family`` or ``inline``

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", as_matrix(self.weights, what=f"kernel {self.name!r}"))

    @property
    def shape(self) -> tuple[int, int]:
        """``(kh, kw)``."""
        return len(self.weights), len(self.weights[0])

    @property
    def sum(self) -> float:
        return msum(self.weights)

    @property
    def min(self) -> float:
        return min(min(r) for r in self.weights)

    @property
    def max(self) -> float:
        return max(max(r) for r in self.weights)

    @property
    def is_zero_sum(self) -> bool:
        """Flat regions map to 0 (derivative kernels)."""
        return is_zero_sum(self.weights)

    @property
    def factors(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(column, row)`` if the kernel is separable (rank 1), else None."""
        return rank1_factors(self.weights)

    @property
    def is_separable(self) -> bool:
        return self.factors is not None

    def with_weights(self, weights: Matrix, **changes: Any) -> Kernel:
        """A copy with new weights (validated again) and any other fields changed."""
        return dataclasses.replace(self, weights=weights, **changes)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description (``featcli kernels show --json``)."""
        f = self.factors
        return {
            "name": self.name, "shape": list(self.shape), "weights": [list(r) for r in self.weights],
            "sum": self.sum, "min": self.min, "max": self.max, "zero_sum": self.is_zero_sum,
            "separable": f is not None,
            "factors": None if f is None else {"column": list(f[0]), "row": list(f[1])},
            "description": self.description, "tags": list(self.tags), "source": self.source,
            "normalisation": self.normalisation, "origin": self.origin,
        }


@dataclass(frozen=True, eq=False)
class ConvWeight:
    """Everything ``featcli run`` needs to build one conv stage.

    ``weight`` is ``(out, in / groups, kh, kw)``; ``labels`` names each output channel; ``gray`` says the
    input must be converted to luminance (one channel) first.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    groups: int
    labels: list[str]
    gray: bool
    kernels: tuple[Kernel, ...] = field(default=())  #: the 2-D kernels (empty for a learned 4-D layer)
