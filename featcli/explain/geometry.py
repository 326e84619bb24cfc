"""Where a stage's windows fall: the drawn input grid (padding, holes, ceil_mode's overhang) and every tap.

Pure Python, from the shape engine's report (:func:`featcli.shape.infer.infer`): the padding, the output size
and the formulas are the shape engine's, so the picture and ``featcli shape`` never disagree. A
:class:`Sweep` is one spatial plane of one stage as the tutorials draw it:

- ``conv``: the padded input; padding cells copy the input cell their mode names (``reflect``,
  ``replicate``, ``circular``) or are zeros.
- ``convt``: drawn as conv_arithmetic draws it: the input with ``s - 1`` holes between cells, padded by
  ``d*(k-1) - p`` on each side (and ``op`` more at the bottom and right), swept by the kernel at stride 1.
- ``maxpool``/``avgpool``: the padded input (padding ignored by max, counted by avg with ``cip=true``), and
  the cells a ``ceil_mode`` window reaches beyond the padded input (never counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from featcli.enums import PaddingMode
from featcli.errors import UsageError
from featcli.shape.infer import infer
from featcli.shape.report import StageReport
from featcli.stages.grammar import shorten
from featcli.stages.params import ConvSpec, ConvTSpec, PoolSpec
from featcli.stages.registry import Op
from featcli.stages.spec import Stage

#: The most cells a side of a drawn grid (the padded input, convt's grid with its holes, the output) may have:
#: a 64x64 input with 8 cells of padding on each side. A bigger grid is no longer an explanation, and drawing
#: it takes minutes (conv:k=3,p=100000 on 5x5 would be a 200005x200005 grid).
MAX_GRID = 80
#: Cell kinds of the drawn grid.
INPUT, PAD, HOLE, BEYOND = "input", "pad", "hole", "beyond"
DRAWN = (Op.CONV, Op.CONVT, Op.MAXPOOL, Op.AVGPOOL)
Cell = tuple[int, int]


@dataclass(frozen=True)
class Sweep:
    """One stage's windows over its drawn input grid.

    Attributes:
        stage: the stage (``p=?`` solved).
        row: the shape engine's report row.
        size: the input ``(H, W)``.
        grid: the drawn grid ``(rows, cols)``.
        kinds: each grid cell's kind (:data:`INPUT`, :data:`PAD`, :data:`HOLE`, :data:`BEYOND`), row-major.
        source: each grid cell's input cell ``(r, c)`` (an input cell itself, or the one a padding mode
            copies), or None (zeros, holes, ignored padding).
        out: the output ``(H, W)``.
        k, step, dil: kernel size, the stride of the sweep over the grid (1 for convt) and the dilation.
        pads: the grid's padding ``(top, bottom, left, right)`` around the input (convt: around the holes).
    """

    stage: Stage
    row: StageReport
    size: Cell
    grid: Cell
    kinds: tuple[str, ...]
    source: tuple[Cell | None, ...]
    out: Cell
    k: Cell
    step: Cell
    dil: Cell
    pads: tuple[int, int, int, int]

    @property
    def op(self) -> Op:
        return self.stage.op

    def kind(self, r: int, c: int) -> str:
        return self.kinds[r * self.grid[1] + c]

    def src(self, r: int, c: int) -> Cell | None:
        return self.source[r * self.grid[1] + c]

    def taps(self, oy: int, ox: int) -> list[Cell]:
        """The grid cells output ``(oy, ox)`` reads, in the kernel's row-major order."""
        r0, c0 = oy * self.step[0], ox * self.step[1]
        return [(r0 + a * self.dil[0], c0 + b * self.dil[1]) for a in range(self.k[0]) for b in range(self.k[1])]

    def outputs(self) -> list[Cell]:
        return [(i, j) for i in range(self.out[0]) for j in range(self.out[1])]

    def counted(self, cell: Cell) -> bool:
        """Whether a tap on ``cell`` takes part: input cells always, padding for conv and avg with cip."""
        kind = self.kind(*cell)
        if kind == INPUT:
            return True
        if kind == PAD:
            sp = self.stage.params
            return not (isinstance(sp, PoolSpec) and (sp.kind == "max" or not sp.count_include_pad))
        return kind == HOLE  # a hole is a zero the kernel multiplies (convt)


def _copy(i: int, n: int, mode: PaddingMode) -> int | None:
    """The input index padding mode ``mode`` copies into padded position ``i`` (input ``0..n-1``)."""
    if 0 <= i < n:
        return i
    if mode is PaddingMode.REFLECT:
        return -i if i < 0 else 2 * (n - 1) - i
    if mode is PaddingMode.REPLICATE:
        return min(max(i, 0), n - 1)
    if mode is PaddingMode.CIRCULAR:
        return i % n
    return None


def report_row(stage: Stage, shape: Sequence[int]) -> StageReport:
    """The shape engine's row of ``stage`` on an input of ``shape`` ``(N, C, H, W)``."""
    return infer(tuple(shape), [stage]).stages[0]


def sweep(stage: Stage, shape: Sequence[int]) -> Sweep:
    """The :class:`Sweep` of ``stage`` on an input of ``shape`` ``(N, C, H, W)``.

    Raises:
        ShapeError: torch would refuse the stage on this input (from the shape engine).
        UsageError: the op is not one explain draws.
    """
    if stage.op not in DRAWN:
        raise UsageError(f"explain draws conv, convt, maxpool and avgpool stages, not {stage.op.value!r}")
    row = report_row(stage, shape)
    stage = row.resolved
    h, w = shape[2], shape[3]
    out = (row.out_shape[2], row.out_shape[3])
    sp = stage.params
    if isinstance(sp, ConvTSpec):
        return _convt(stage, row, (h, w), out)
    cfg = row.config
    if isinstance(sp, ConvSpec):
        (t, b), (le, ri) = cfg["p"]
        k, s, d, mode = tuple(cfg["k"]), tuple(cfg["s"]), tuple(cfg["d"]), sp.padding_mode
        extra = (0, 0)
    else:
        assert isinstance(sp, PoolSpec)
        t = b = cfg["p"][0]
        le = ri = cfg["p"][1]
        k, s, d, mode = sp.kernel_size, sp.stride, sp.dilation, PaddingMode.ZEROS
        # ceil_mode: the last window may reach past the padded input
        extra = tuple(max(0, (out[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 - ((h, w)[a] + 2 * cfg["p"][a]))
                      for a in range(2))
    rows, cols = t + h + b + extra[0], le + w + ri + extra[1]
    _check_grid(stage, (rows, cols), f"the input {h}x{w} padded by {t},{b},{le},{ri} (top, bottom, left, right)"
                + (f" and {extra[0]}x{extra[1]} cells ceil_mode's last windows reach" if any(extra) else ""), out)
    kinds: list[str] = []
    source: list[Cell | None] = []
    for r in range(rows):
        for c in range(cols):
            if r >= t + h + b or c >= le + w + ri:
                kinds.append(BEYOND)
                source.append(None)
                continue
            y, x = _copy(r - t, h, mode), _copy(c - le, w, mode)
            inside = 0 <= r - t < h and 0 <= c - le < w
            kinds.append(INPUT if inside else PAD)
            source.append((y, x) if y is not None and x is not None else None)
    return Sweep(stage, row, (h, w), (rows, cols), tuple(kinds), tuple(source), out, (k[0], k[1]),
                 (s[0], s[1]), (d[0], d[1]), (t, b, le, ri))


def _check_grid(stage: Stage, grid: Cell, what: str, out: Cell) -> None:
    """Refuse a stage whose drawn grid or output has more than :data:`MAX_GRID` cells on a side, before
    anything is drawn."""
    if max(grid) > MAX_GRID:
        raise UsageError(f"explain draws at most {MAX_GRID}x{MAX_GRID} cells; {shorten(stage.text)} draws a "
                         f"{grid[0]}x{grid[1]} grid ({what}): use a smaller input, padding, stride or dilation")
    if max(out) > MAX_GRID:
        raise UsageError(f"explain draws at most {MAX_GRID}x{MAX_GRID} output cells; {shorten(stage.text)} has "
                         f"{out[0]}x{out[1]}")


def _convt(stage: Stage, row: StageReport, size: Cell, out: Cell) -> Sweep:
    sp = stage.params
    assert isinstance(sp, ConvTSpec)
    cfg = row.config
    k, s, d, p, op = cfg["k"], cfg["s"], cfg["d"], cfg["p"], cfg["op"]
    q = [d[a] * (k[a] - 1) - p[a] for a in range(2)]
    if min(q) < 0:
        raise UsageError(f"explain draws convt with padding p <= d*(k-1) (here p={p[0]}x{p[1]}, "
                         f"d*(k-1)={d[0] * (k[0] - 1)}x{d[1] * (k[1] - 1)}): a larger p crops the output")
    dims = [(size[a] - 1) * s[a] + 1 + 2 * q[a] + op[a] for a in range(2)]
    _check_grid(stage, (dims[0], dims[1]), f"the input {size[0]}x{size[1]} with {s[0] - 1}x{s[1] - 1} holes between "
                f"cells, padded by {q[0]}x{q[1]}", out)
    kinds: list[str] = []
    source: list[Cell | None] = []
    for r in range(dims[0]):
        for c in range(dims[1]):
            y, x = r - q[0], c - q[1]
            inside = 0 <= y <= (size[0] - 1) * s[0] and 0 <= x <= (size[1] - 1) * s[1]
            if inside and y % s[0] == 0 and x % s[1] == 0:
                kinds.append(INPUT)
                source.append((y // s[0], x // s[1]))
            else:
                kinds.append(HOLE if inside else PAD)
                source.append(None)
    return Sweep(stage, row, size, (dims[0], dims[1]), tuple(kinds), tuple(source), out, (k[0], k[1]),
                 (1, 1), (d[0], d[1]), (q[0], q[0] + op[0], q[1], q[1] + op[1]))
