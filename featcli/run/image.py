"""One image through a run: load, plan, compute, and write the grid, per-stage maps and raw tensors.

:func:`process_image` is what ``featcli run`` calls for each input (and what the batch layer calls on
worker threads); it returns an :class:`ImageOutcome` and raises :class:`FeatcliError` on failure,
leaving no partial file behind (every file goes through :mod:`featcli.io.outputs`).
"""

from __future__ import annotations

import dataclasses
import io
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.engine.loop import StageResult, plan, run_stack, run_stack_numpy
from featcli.enums import Engine, Stream
from featcli.errors import OutputError, UsageError
from featcli.io.images import LoadedImage, LoadOptions, load_image, to_tensor
from featcli.io.outputs import atomic_write, check_output
from featcli.render import GridOptions, Tile, render_grid, render_map, save_png
from featcli.shape.report import ShapeReport
from featcli.stages.spec import Stage

if TYPE_CHECKING:
    from featcli.engine.torch_backend import OpContext

_SAVE_EXTS = (".npz", ".pt", ".npy")
_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class RunConfig:
    """Everything that is the same for every image of a run."""

    stack: tuple[Stage, ...]
    load: LoadOptions = field(default_factory=LoadOptions)
    device: Any = "cpu"  #: a ``torch.device`` (or "cpu"); see :func:`featcli.engine.devices.resolve_device`
    engine: Engine = Engine.AUTO
    threads: int | None = None  #: torch CPU threads (None: torch's default, all cores)
    stream: Stream = Stream.AUTO
    seed: int = 0
    kernels_dir: str | None = None
    allow_torchscript: bool = False
    output: str | None = None  #: ``-o``: grid (several maps) or full-resolution map (one)
    out_dir: str | None = None  #: one PNG per stage
    name_template: str = "{stem}_s{index}_{op}.png"
    stages: str | None = None  #: which stages the outputs show: "last", "all", "1,3", "2-4"
    grid: GridOptions = field(default_factory=GridOptions)
    show_input: bool = False
    save: str | None = None  #: raw tensors: .npz / .pt (every stage) or .npy (one stage)
    force: bool = False
    command: str = ""  #: the full command line, recorded in PNG metadata

    def __post_init__(self) -> None:
        try:  # library callers may pass plain strings
            object.__setattr__(self, "engine", Engine(self.engine))
            object.__setattr__(self, "stream", Stream(self.stream))
        except ValueError as exc:
            raise UsageError(str(exc)) from None


@dataclass(frozen=True, eq=False)
class ImageOutcome:
    """What a run did to one image."""

    path: str
    input_shape: tuple[int, ...]
    report: ShapeReport
    results: list[StageResult]
    outputs: list[str]
    seconds: float
    engine: str = "torch"

    def record(self) -> dict[str, Any]:
        """The JSON object of ``featcli run --json`` for this image (keys documented in README)."""
        return {
            "path": self.path, "status": "ok", "input": list(self.input_shape),
            "output": list(self.report.output), "params": self.report.params, "macs": self.report.macs,
            "stages": [r.record() for r in self.results], "outputs": self.outputs,
            "seconds": round(self.seconds, 6), "engine": self.engine,
        }


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


def validate_outputs(cfg: RunConfig) -> None:
    """Fail early (before any compute) on output names that cannot be written."""
    if cfg.save and not cfg.save.lower().endswith(_SAVE_EXTS):
        raise OutputError(f"--save must end in {', '.join(_SAVE_EXTS)}", path=cfg.save)
    if cfg.output and not cfg.output.lower().endswith(".png"):
        raise OutputError("-o must be a .png file", path=cfg.output)
    if cfg.out_dir and not Path(cfg.out_dir).is_dir():
        raise OutputError("--out-dir is not an existing folder", path=cfg.out_dir)


def _spatial(r: StageResult) -> bool:
    return len(r.actual) == 4


def as_numpy(t: Any) -> Any:
    """A stage tensor as a float32 NumPy array (torch tensors are moved to the CPU first)."""
    if hasattr(t, "detach"):
        import torch

        return t.detach().to("cpu", torch.float32).numpy()
    return t


def _tiles(results: Sequence[StageResult]) -> list[Tile]:
    tiles: list[Tile] = []
    for r in results:
        if r.display is not None and r.ranges is not None:
            full = (r.actual[2], r.actual[3])
            tiles.extend(Tile(f"s{r.index} {r.op} · {label}", r.display[c], stage=r.name, full_shape=full,
                              vrange=r.ranges[c]) for c, label in enumerate(r.labels))
            continue
        maps = as_numpy(r.tensor[0])
        for c, label in enumerate(r.labels):
            vrange = r.ranges[c] if r.ranges else None
            tiles.append(Tile(f"s{r.index} {r.op} · {label}", maps[c], stage=r.name, vrange=vrange))
    return tiles


def _picture(results: Sequence[StageResult], cfg: RunConfig, image: LoadedImage, title: str) -> Any:
    """A full-resolution map when exactly one map is shown (and no input tile), else a labelled grid."""
    tiles = _tiles(results)
    if len(tiles) == 1 and not cfg.show_input and tiles[0].full_shape is None:
        return render_map(tiles[0].data, cfg.grid)
    opts = cfg.grid if cfg.grid.title else dataclasses.replace(cfg.grid, title=title)
    shown = image.array[:, :, :3] if cfg.show_input else None
    return render_grid(tiles, opts, input_image=shown)


def _metadata(cfg: RunConfig, path: str, stages: Sequence[StageResult]) -> dict[str, str]:
    return {
        "featcli:command": cfg.command,
        "featcli:input": path,
        "featcli:stages": " ".join(f"{r.name}={'x'.join(map(str, r.actual))}" for r in stages),
    }


def _save_raw(results: Sequence[StageResult], picked: list[int], path: str, cfg: RunConfig,
              inputs: list[str]) -> str:
    ext = Path(path).suffix.lower()
    tensors = {r.name: as_numpy(r.tensor) for r in results if r.index in picked}
    if ext == ".npy":
        if len(tensors) != 1:
            raise OutputError(f".npy holds one stage; {len(tensors)} selected (use --stages N, or .npz)", path=path)
        (only,) = tensors.values()

        def write(fh: Any) -> None:
            import numpy as np

            np.save(fh, only, allow_pickle=False)
    elif ext == ".npz":

        def write(fh: Any) -> None:
            import numpy as np

            np.savez(fh, **tensors)
    else:

        def write(fh: Any) -> None:
            import torch

            buf = io.BytesIO()
            torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, buf)
            fh.write(buf.getvalue())

    return str(atomic_write(path, write, force=cfg.force, inputs=inputs))


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


def write_outputs(dest: Destinations, cfg: RunConfig, image: LoadedImage, results: Sequence[StageResult]) -> list[str]:
    """Render and write every output of one image (atomically; nothing partial on failure)."""
    label = image.header.path
    inputs = [label]
    outputs: list[str] = []
    if dest.output:
        picked = [r for r in results if r.index in dest.shown and _spatial(r)]
        pic = _picture(picked, cfg, image, f"{label} · {' -> '.join(r.op for r in results)}")
        outputs.append(str(save_png(pic, dest.output, metadata=_metadata(cfg, label, picked), force=cfg.force,
                                    inputs=inputs)))
    for r in results:
        if r.index in dest.stage_files:
            pic = _picture([r], cfg, image, f"{label} · s{r.index} {r.spec}")
            outputs.append(str(save_png(pic, dest.stage_files[r.index], metadata=_metadata(cfg, label, [r]),
                                        force=cfg.force, inputs=inputs)))
    if dest.save:
        outputs.append(_save_raw(results, dest.saved, dest.save, cfg, inputs))
    return outputs


def op_context(cfg: RunConfig) -> OpContext:
    import torch

    from featcli.engine.torch_backend import OpContext

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return OpContext(device=torch.device(cfg.device), seed=cfg.seed, kernels_dir=cfg.kernels_dir,
                     allow_torchscript=cfg.allow_torchscript)


def process_image(path: str, cfg: RunConfig, *, stem: str | None = None, n: int = 0) -> ImageOutcome:
    """Load ``path``, run ``cfg.stack`` on it and write the requested outputs.

    Raises:
        FeatcliError: the image cannot be loaded, a stage is refused or fails, an output cannot be written.
    """
    t0 = time.perf_counter()
    image = load_image(path, cfg.load)
    shape = (1, image.array.shape[2], image.array.shape[0], image.array.shape[1])
    report = plan(shape, cfg.stack, kernels_dir=cfg.kernels_dir, allow_torchscript=cfg.allow_torchscript)
    dest = destinations(cfg, report, path, stem=stem, n=n)
    check_destinations(dest, cfg, path)
    engine = choose_engine(cfg)
    if engine == "numpy":
        from featcli.engine.numpy_backend import HWC

        x_np = HWC(image.array, image.value_max, cfg.load.scale.factor)
        results = run_stack_numpy(x_np, report, kernels_dir=cfg.kernels_dir, keep=dest.keep,
                                  input_labels=image.channel_names)
    else:
        x = to_tensor(image, scale=cfg.load.scale, device=cfg.device)
        if cfg.stream is not Stream.OFF and _streamable(report, dest, cfg):
            from featcli.engine.streamed import run_streamed

            results = run_streamed(x, report, op_context(cfg), tile_px=cfg.grid.tile_px,
                                   peak=cfg.grid.reduce == "peak", input_labels=image.channel_names)
        else:
            results = run_stack(x, report, op_context(cfg), keep=dest.keep, input_labels=image.channel_names)
    outputs = write_outputs(dest, cfg, image, results)
    return ImageOutcome(image.header.path, shape, report, results, outputs, time.perf_counter() - t0, engine)


def _streamable(report: ShapeReport, dest: Destinations, cfg: RunConfig) -> bool:
    from featcli.engine.streamed import can_stream

    return can_stream(report, dest.shown, len(dest.stage_files) + bool(dest.save), force=cfg.stream is Stream.ON)


def choose_engine(cfg: RunConfig) -> str:
    """``numpy`` when asked, or on ``auto`` when the device is the CPU and every stage is supported."""
    from featcli.engine.numpy_backend import supports

    if cfg.engine is Engine.TORCH:
        return "torch"
    ok = str(cfg.device) == "cpu" and supports(cfg.stack, cfg.kernels_dir)
    if cfg.engine is Engine.NUMPY and not ok:
        raise UsageError("--engine numpy runs only fixed 2-D kernels (stride 1, dilation 1), magnitude, abs, "
                         "relu, sigmoid, tanh, unpadded pooling and global pooling on the CPU; use --engine auto")
    return "numpy" if ok else "torch"
