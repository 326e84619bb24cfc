"""The shape engine's walk state and per-stage scratch row, shared by the rules."""

from __future__ import annotations

from typing import Any

from featcli.shape.report import Num, Options
from featcli.stages.grammar import Pair, shorten
from featcli.stages.params import Params


class WalkState:
    """The tensor as the walk goes: shape, receptive field and jump per axis."""

    __slots__ = ("shape", "rf", "jump", "spatial", "allow_torchscript", "kernels_dir", "saved", "aside", "maker",
                 "index", "text")

    def __init__(self, shape: tuple[int, ...], allow_torchscript: bool = False,
                 kernels_dir: str | None = None) -> None:
        self.shape = shape
        self.kernels_dir = kernels_dir  # extra kernel folder for conv:w= refs
        self.allow_torchscript = allow_torchscript  # for conv:w= refs to TorchScript files (they are code)
        self.rf: list[Num] = [1, 1]
        self.jump: list[Num] = [1, 1]
        self.spatial = (shape[2], shape[3])  # last (H, W), for the global receptive field after flatten
        # Branches (featcli.shape.branches): tensors saved by name, those a side branch set aside, and who
        # made the current tensor and which stage runs now, for messages. Both are kept as the stage's index
        # and text and spelt out (``stage 4 'save:a'``) only when a message or a saved tensor needs them.
        self.saved: dict[str, Any] = {}
        self.aside: list[Any] = []
        self.maker: str | tuple[int, str] = "the input"
        self.index = 0
        self.text = ""

    @property
    def here(self) -> str:
        """The stage that runs now, as messages name it: ``stage 4 'save:a'``."""
        return where(self.index, self.text)

    @property
    def made_by(self) -> str:
        """What made the current tensor: ``stage 3 'conv:k=3'``, ``the input``, ``saved at stage 1 ...``."""
        m = self.maker
        return m if isinstance(m, str) else where(m[0], m[1])

    @made_by.setter
    def made_by(self, text: str) -> None:
        self.maker = text


def where(index: int, text: str) -> str:
    """``stage 4 'save:a'``: a stage as messages name it (a long spec shortened)."""
    return f"stage {index} {text!r}" if len(text) <= 200 else f"stage {index} {shorten(text, 200)}"


class Row:
    """Mutable scratch result of one stage, filled in by its rule."""

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


AXES = ("H", "W")


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


def need_values(op: str, shape: tuple[int, ...]) -> None:
    """Refuse an empty (zero-size) map, as torch's conv, transposed conv and pooling kernels do."""
    if 0 in shape[2:]:
        raise Refusal(f"{op} needs a non-empty input but gets the empty map {list(shape)} "
                       "(torch refuses it)")


def kernel_too_large(sizes: Pair, pads: list[tuple[int, int]], ks: Pair, ds: Pair, ss: Pair) -> str:
    """Why a conv kernel does not fit its input: the sizes, the kernel, and the padding that would make it fit.

    >>> kernel_too_large((2, 2), [(0, 0), (0, 0)], (3, 3), (1, 1), (1, 1))
    'kernel 3x3 is larger than the input 2x2 (H: 3 > 2; W: 3 > 2); pad it (p=1, or p=same) or use a smaller kernel'
    """
    spans = [ds[a] * (ks[a] - 1) + 1 for a in range(2)]
    padded = [sizes[a] + pads[a][0] + pads[a][1] for a in range(2)]
    kernel = f"kernel {ks[0]}x{ks[1]}"
    if ds != (1, 1):
        d = f"{ds[0]}" if ds[0] == ds[1] else f"{ds[0]}x{ds[1]}"
        kernel += f" dilated by d={d} (spans {spans[0]}x{spans[1]})"
    where = f"the input {sizes[0]}x{sizes[1]}"
    if padded != list(sizes):
        where += f" padded to {padded[0]}x{padded[1]}"
    short = "; ".join(f"{AXES[a]}: {spans[a]} > {padded[a]}" for a in range(2) if spans[a] > padded[a])
    fix = [max(pads[a][0], pads[a][1], -(-(spans[a] - sizes[a]) // 2)) for a in range(2)]
    fix_text = f"p={fix[0]}" if fix[0] == fix[1] else f"p={fix[0]}x{fix[1]}"
    same = ", or p=same" if ss == (1, 1) else ""
    return f"{kernel} is larger than {where} ({short}); pad it ({fix_text}{same}) or use a smaller kernel"
