"""``featcli run IMAGE --model model.safetensors``: a trained network through the normal run, plus its answer.

The model's stack is planned with its trained tensors (:func:`featcli.engine.network.open_model`) and runs
through the same :class:`featcli.run.image.Runner` and loop as any stack: the stage table with predicted and
actual shapes, every stage's feature maps for the usual outputs. The image is loaded with the model's loading
options and resized to its input size. The last stage's scores become the top-k classes
(:func:`featcli.engine.predict.top_k`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featcli.engine.predict import Prediction, top_k
from featcli.errors import FeatcliError, about
from featcli.run.config import ImageOutcome, RunConfig
from featcli.run.image import Runner
from featcli.run.write import write_outputs

if TYPE_CHECKING:
    from featcli.engine.network import OpenedModel

__all__ = ["TrainedOutcome", "TrainedRunner", "model_config"]


def model_config(cfg: RunConfig, model: OpenedModel) -> RunConfig:
    """``cfg`` running ``model``: its stack, its loading options (resized to its input) and tensors."""
    return dataclasses.replace(cfg, stack=model.stack, load=model.load_options(max_pixels=cfg.load.max_pixels),
                               trained=model.tensors)


@dataclass(frozen=True, eq=False)
class TrainedOutcome:
    """One image through a trained model: the run's outcome, the prediction, and the resize made."""

    outcome: ImageOutcome
    predictions: list[Prediction]
    original: tuple[int, int]  #: (width, height) of the image as stored

    def record(self, model: str) -> dict[str, Any]:
        """``featcli run --json`` with the model's answer: the run's record plus ``model`` and ``prediction``."""
        return {**self.outcome.record(), "model": model, "prediction": [p.record() for p in self.predictions]}


class TrainedRunner:
    """Runs one model on images (see the module docstring); ``cfg`` from :func:`model_config`."""

    def __init__(self, cfg: RunConfig, model: OpenedModel, *, top: int = 5) -> None:
        self.cfg, self.model, self.top = cfg, model, top
        self.runner = Runner(cfg)

    def check_run(self, paths: list[str], stems: list[str]) -> None:
        self.runner.check_run(paths, stems)

    def process(self, path: str, *, stem: str | None = None, n: int = 0) -> TrainedOutcome:
        """As :meth:`featcli.run.image.Runner.process`, keeping the last stage's scores for the prediction."""
        runner = self.runner
        t0 = time.perf_counter()
        image, plan, dest = runner.prepare(path, stem=stem, n=n)
        last = plan.stages[-1].index
        keep = None if dest.keep is None else {*dest.keep, last}
        x = runner.to_input(image, plan)
        try:
            (results,) = runner.execute(x, plan, keep=keep)
        except FeatcliError as exc:
            raise about(exc, image.header.path) from None
        scores = results[-1].tensor.detach().flatten().cpu().tolist()
        predictions = top_k(scores, self.model.classes, self.top)
        if dest.keep is not None and last not in dest.keep:  # kept for the answer only, not for the outputs
            results[-1] = dataclasses.replace(results[-1], tensor=results[-1].tensor[:0])
        outputs = write_outputs(dest, self.cfg, image, results, runner.inputs)
        w, h = image.header.size
        if image.header.orientation in (5, 6, 7, 8):
            w, h = h, w
        return TrainedOutcome(runner.outcome(image, plan, results, outputs, t0, n), predictions, (w, h))
