"""An image loaded for a run and waiting for its turn: what a runner's ``load`` step hands to ``run``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Loaded"]


@dataclass
class Loaded:
    """One input after its loader thread: the image, its plan (stage stacks), its destinations, the input
    tensor and, when the NumPy engine ran it whole there, its outcome."""

    index: int
    image: Any
    plan: Any
    dest: Any
    x: Any
    started: float
    streaming: Any = None
    notes: list[str] = field(default_factory=list)
    stem: str | None = None
    path: str = ""  #: the input as the run names it (its output names are filled from it)
    outcome: Any = None  #: set when the loader ran the image whole (the NumPy engine)

    @property
    def key(self) -> Any:
        """Images of one key may run stacked in one NCHW batch; None runs alone (streamed, or a network)."""
        return None if self.streaming is not None or self.plan is None else id(self.plan)
