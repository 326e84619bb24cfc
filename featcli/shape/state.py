"""The shape engine's walk state and per-stage scratch row, shared by the rules."""

from __future__ import annotations

from typing import Any

from featcli.shape.report import Num, Options
from featcli.stages.params import Params


class WalkState:
    """The tensor as the walk goes: shape, receptive field and jump per axis."""

    __slots__ = ("shape", "rf", "jump", "spatial", "allow_torchscript", "kernels_dir")

    def __init__(self, shape: tuple[int, ...], allow_torchscript: bool = False,
                 kernels_dir: str | None = None) -> None:
        self.shape = shape
        self.kernels_dir = kernels_dir  # extra kernel folder for conv:w= refs
        self.allow_torchscript = allow_torchscript  # for conv:w= refs to TorchScript files (they are code)
        self.rf: list[Num] = [1, 1]
        self.jump: list[Num] = [1, 1]
        self.spatial = (shape[2], shape[3])  # last (H, W), for the global receptive field after flatten


class Row:
    """Mutable scratch result of one stage (a plain slotted class: this is the hot path of stdin mode)."""

    __slots__ = ("out", "params", "macs", "formulas", "notes", "config", "resolved", "solved", "options")

    def __init__(self, out: tuple[int, ...] = (), resolved: Params | None = None) -> None:
        self.out = out
        self.params = 0
        self.macs = 0
        self.formulas: list[str] = []
        self.notes: list[str] = []
        self.config: dict[str, Any] = {}
        self.resolved = resolved
        self.solved: dict[str, list[int]] | None = None
        self.options: Options | None = None


class Refusal(Exception):
    """Internal: a reason torch would refuse; :func:`infer` adds the stage index and spec."""


def need_4d(op: str, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise Refusal(f"{op} needs a 4-D (N, C, H, W) input but gets {list(shape)} "
                       "(flatten/linear must come after the spatial stages)")
    return shape[0], shape[1], shape[2], shape[3]


def check_groups(c: int, out: int, g: int) -> None:
    if c % g:
        raise Refusal(f"in channels {c} not divisible by groups g={g}")
    if out % g:
        raise Refusal(f"out channels {out} not divisible by groups g={g}")


