"""Where each input's outputs go: stage selection, name templates, and the checks made before any compute."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from featcli.errors import OutputError, UsageError
from featcli.io.outputs import check_output
from featcli.run.config import RunConfig
from featcli.shape.report import ShapeReport

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def select_stages(text: str | None, n: int, default: str) -> list[int]:
    """``last`` | ``all`` | ``1,3`` | ``2-4`` (1-based, as shown in the table) -> sorted indices."""
    text = (text or default).strip().lower()
    if text == "last":
        return [n]
    if text == "all":
        return list(range(1, n + 1))
    picked: set[int] = set()
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if not m:
            raise UsageError(f"--stages {text!r}: expected last, all, or numbers and ranges like 1,3-4")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= lo <= hi <= n:
            raise UsageError(f"--stages {text!r}: stages are numbered 1..{n}")
        picked.update(range(lo, hi + 1))
    return sorted(picked)



_FIELDS = "{stem} {name} {ext} {parent} {n} (and {index} {op} {stage} in --name)"


def fill(template: str, src: str, *, stem: str | None = None, n: int = 0, **stage: object) -> str:
    """Fill an output name template for input ``src``: ``{stem}``, ``{name}``, ``{ext}``, ``{parent}``,
    ``{n}`` (input number) and, for per-stage files, ``{index}``, ``{op}``, ``{stage}``.

    >>> fill("out/{stem}_s{index}_{op}.png", "a/photo.jpg", index=2, op="relu")
    'out/photo_s2_relu.png'
    """
    p = Path(src) if src not in ("-", "<stdin>") else Path("stdin")
    values = {"stem": stem or p.stem, "name": p.name, "ext": p.suffix.lstrip("."), "parent": p.parent.name,
              "n": n, **stage}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"bad output name template {template!r} ({exc}); fields: {_FIELDS}") from None


def is_template(name: str | None) -> bool:
    """True when an output name has ``{...}`` fields (one file per input)."""
    return bool(name) and "{" in str(name)


@dataclass(frozen=True)
class Destinations:
    """Where one input's outputs go, decided (and checked) before any compute."""

    output: str | None
    stage_files: dict[int, str]  #: stage index -> PNG path (``--out-dir``)
    save: str | None
    shown: list[int]
    saved: list[int]

    @property
    def all(self) -> list[str]:
        return [p for p in (self.output, *self.stage_files.values(), self.save) if p]

    @property
    def keep(self) -> set[int]:
        return set(self.shown) | set(self.stage_files) | set(self.saved)


def destinations(cfg: RunConfig, report: ShapeReport, src: str, *, stem: str | None = None, n: int = 0) -> Destinations:
    """The files ``src`` will produce under ``cfg`` (templates filled, stages selected)."""
    count = len(report.stages)
    every = select_stages(cfg.stages, count, "all")  # validates --stages even when nothing is written
    spatial = {row.index for row in report.stages if len(row.out_shape) == 4}
    stage_files: dict[int, str] = {}
    if cfg.out_dir:
        for row in report.stages:
            if row.index in every and row.index in spatial:
                name = fill(cfg.name_template, src, stem=stem, n=n, index=row.index, op=row.op,
                            stage=f"s{row.index}_{row.op}")
                stage_files[row.index] = str(Path(cfg.out_dir) / (name if name.lower().endswith(".png")
                                                                   else name + ".png"))
    output = fill(cfg.output, src, stem=stem, n=n) if cfg.output else None
    save = fill(cfg.save, src, stem=stem, n=n) if cfg.save else None
    shown = select_stages(cfg.stages, count, "last") if output else []
    if output and not any(i in spatial for i in shown):
        raise OutputError("the selected stages have no spatial maps to draw (flatten/linear); pick others with "
                          "--stages", path=output)
    saved = every if save else []
    return Destinations(output, stage_files, save, shown, saved)


def check_destinations(dest: Destinations, cfg: RunConfig, src: str) -> None:
    """Refuse before computing: existing files without --force, an input file, a missing folder."""
    for path in dest.all:
        check_output(path, force=cfg.force, inputs=[src])

