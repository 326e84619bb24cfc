"""What a run is asked to do, validated once: :class:`RunConfig`, and what it did to one image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.engine.loop import StageResult
from featcli.enums import Engine, Resize, Stream
from featcli.errors import UsageError
from featcli.io.images import LoadOptions
from featcli.io.outputs import check_folder
from featcli.io.tensors import SAVE_EXTS
from featcli.render import GridOptions
from featcli.run.routes import STAGE_NAMES
from featcli.stages.spec import Stage

if TYPE_CHECKING:
    from featcli.shape.report import ShapeReport

@dataclass(frozen=True)
class ModelOptions:
    """``--model`` and what goes with it: the network, its weights (module:attr), the layers to keep, class
    names, how many classes the answer lists, the input size."""

    model: str
    weights: str | None = None
    layers: tuple[str, ...] = ()
    labels: tuple[str, ...] | None = None
    top: int = 5
    size: tuple[int, int] | None = None
    resize: Resize | None = None  #: ``--resize`` as given (None: crop, or what a model file records)


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
    max_bytes: int | None = None  #: memory budget of one stage (None: half the available memory; 0: none)
    kernels_dir: str | None = None
    allow_torchscript: bool = False
    output: str | None = None  #: ``-o``: grid (several maps) or full-resolution map (one)
    out_dir: str | None = None  #: one PNG per stage
    name_template: str = STAGE_NAMES
    stages: str | None = None  #: which stages the outputs show: "last", "all", "1,3", "2-4"
    grid: GridOptions = field(default_factory=GridOptions)
    show_input: bool = False
    html: str | None = None  #: ``--html``: one page of the whole run (:mod:`featcli.run.page`)
    save: str | None = None  #: raw tensors: .npz / .pt (every stage) or .npy (one stage)
    force: bool = False
    command: str = ""  #: the full command line, recorded in PNG metadata
    run_id: str = ""  #: recorded in PNG metadata as ``featcli:run`` when set (a retried Ray part finds its files)
    #: ``--model``: a featcli model file's stack runs here; any other network through its own route.
    model: ModelOptions | None = None
    #: A featcli model file's tensors: the plan's learned stages use them, on torch. Never pickled: a worker
    #: process or Ray actor opens the model file itself (:func:`featcli.run.routes.make_runner`).
    trained: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:  # library callers may pass plain strings
            object.__setattr__(self, "engine", Engine(self.engine))
            object.__setattr__(self, "stream", Stream(self.stream))
        except ValueError as exc:
            raise UsageError(str(exc)) from None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "trained": None}


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
    device: str = "cpu"
    index: int = 0  #: position in the run's inputs
    extra: dict[str, Any] = field(default_factory=dict)  #: a model file's ``model`` and ``prediction``
    predictions: list[Any] = field(default_factory=list)  #: a model file's answer
    notes: list[str] = field(default_factory=list)  #: what loading changed, said once for one image
    page: Any = field(default=None, repr=False)  #: ``--html``: this image's section of the page

    def record(self) -> dict[str, Any]:
        """The JSON object of ``featcli run --json``, the same keys for one input and for a batch
        (documented in docs/run.md)."""
        return {
            "path": self.path, "index": self.index, "status": "ok", "input": list(self.input_shape),
            "output": list(self.report.output), "params": self.report.params, "macs": self.report.macs,
            "stages": [r.record() for r in self.results], "outputs": self.outputs,
            "seconds": round(self.seconds, 6), "engine": self.engine, "device": self.device, **self.extra,
        }


def validate_outputs(cfg: RunConfig) -> None:
    """Fail early (before any compute) on output names that cannot be written."""
    if cfg.save and not cfg.save.lower().endswith(SAVE_EXTS):
        raise UsageError(f"--save {cfg.save}: the name must end in {', '.join(SAVE_EXTS)}")
    if cfg.output and cfg.output != "-" and not cfg.output.lower().endswith(".png"):
        raise UsageError(f"-o {cfg.output}: featcli writes PNG; give a name ending in .png")
    if cfg.out_dir:
        check_folder(Path(cfg.out_dir), path=cfg.out_dir)

