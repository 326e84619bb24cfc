"""``featcli train DATA STAGE... -o model.safetensors``: plan, train, write, as one core function.

:func:`prepare` does everything that can fail before training (the data, the stack planned for the data's
input size and checked to end in one score per class, the destinations); :func:`train` fits and then writes
the model file and its pictures (:mod:`featcli.train.artefacts`) all together. The CLI
(:mod:`featcli.cli.train_cmd`) only adds the progress bar and the printing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featcli.engine.network import Network, check_classifier, check_learnable
from featcli.engine.plan import Plan, Planner, PlanOptions
from featcli.errors import BudgetError, UsageError
from featcli.stages.registry import Op
from featcli.stages.spec import Stage
from featcli.train.artefacts import check_destinations, picture_paths, side_by_side, write_all
from featcli.train.data import Dataset
from featcli.train.fit import Epoch, FitOptions, FitResult, fit, memory_need, split

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Prepared", "TrainOutcome", "prepare", "train"]


@dataclass(frozen=True, eq=False)
class Prepared:
    """A training run ready to start: data, plan, untrained network, where its files go."""

    data: Dataset
    stack: tuple[Stage, ...]
    plan: Plan
    network: Network
    model: str
    pictures: dict[str, str]
    opts: FitOptions
    force: bool = False
    html: str | None = None  #: ``--html``: the training's page (:mod:`featcli.train.page`)


@dataclass(frozen=True, eq=False)
class TrainOutcome:
    """What a training run did."""

    prepared: Prepared
    result: FitResult
    files: list[str]
    seconds: float  #: the whole run, training and writing
    meta: Any = field(repr=False)

    def record(self) -> dict[str, Any]:
        """The JSON of ``featcli train --json``."""
        p, r = self.prepared, self.result
        return {"data": p.data.name, "classes": list(p.data.classes), "input": list(p.data.input_shape),
                "images": len(p.data), "train_images": len(r.train_index), "val_images": len(r.val_index),
                "stack": [s.text for s in p.stack], "params": p.plan.report.params, **p.opts.record(),
                "history": [e.record() for e in r.history], "final": r.final.record(),
                "seconds": round(self.seconds, 3), "train_seconds": round(r.seconds, 3), "files": self.files,
                "skipped": list(p.data.skipped)}


def prepare(data: Dataset, stack: Sequence[Stage], model: str, opts: FitOptions, *, force: bool = False,
            max_bytes: int | None = None, html: str | None = None) -> Prepared:
    """Plan ``stack`` for ``data``'s input and check it and the destinations, before any training.

    Raises:
        UsageError: weights from files (``w=``), a bad model name; ShapeError: the stack refuses the input
        size, or does not end in one score per class; BudgetError: a training step would need more than the
        memory budget (:func:`featcli.train.fit.memory_need`); OutputError: a destination exists or cannot be
        written.
    """
    stack = tuple(stack)
    check_learnable(stack)
    plan = Planner(stack, PlanOptions(seed=opts.seed, max_bytes=max_bytes)).plan_for((1, *data.input_shape))
    check_classifier(plan.report, len(data.classes), data.name)
    _check_memory(plan, opts, len(split(data.y, opts.val_split, opts.seed)[0]))
    pictures = picture_paths(model)
    check_destinations(model, list(pictures.values()), force=force)
    if html is not None:
        from featcli.render.page import check_page

        if html in (model, *pictures.values()):
            raise UsageError(f"--html {html}: the model file or one of its pictures has that name")
        check_page(html, force=force)
    return Prepared(data, stack, plan, Network(plan), model, pictures, opts, force, html)


def _check_memory(plan: Plan, opts: FitOptions, images: int) -> None:
    """Refuse, before the network is built, a training run on ``images`` training images whose step needs more
    than the plan's budget."""
    from featcli.shape.memory import human_bytes

    need, how = memory_need(plan.report, opts, images)
    if plan.budget and need > plan.budget:
        raise BudgetError(f"training needs about {human_bytes(need)} ({how}), over the memory budget of "
                          f"{human_bytes(plan.budget)} (--max-memory); lower --batch-size")


def _bank(weight: Any, title: str, in_labels: Sequence[str] | None) -> Image.Image:
    from featcli.render.bank import filter_bank

    image: Image.Image = filter_bank(weight, title=title, in_labels=list(in_labels) if in_labels else None)
    return image


def _pictures(p: Prepared, result: FitResult, before: Any) -> dict[str, Image.Image]:
    from featcli.render.charts import confusion, training_curves

    rows = [{k: v for k, v in e.record().items() if k != "seconds"} for e in result.history]
    held_out = "validation" if len(result.val_index) else "training"
    title = f"{p.data.name}: {held_out} set, {int(result.confusion.sum())} images"
    out = {p.pictures["curves"]: training_curves(rows),
           p.pictures["confusion"]: confusion(result.confusion, list(p.data.classes), title=title)}
    conv = p.network.first_conv()
    if conv is not None and before is not None:
        sees_image = p.plan.stages[0].op is Op.CONV  # the first conv is stage 1: its inputs are the image's
        labels = {1: ("gray",), 3: ("R", "G", "B")}.get(conv.in_channels) if sees_image else None
        after = conv.weight.detach().cpu().numpy()
        out[p.pictures["filters"]] = side_by_side(_bank(before, "before training (random init)", labels),
                                                  _bank(after, f"after {len(result.history)} epochs", labels))
    return out


def train(p: Prepared, *, on_batch: Callable[[int, int, int], None] | None = None,
          on_epoch: Callable[[Epoch], None] | None = None, command: str = "") -> TrainOutcome:
    """Fit the prepared network, then write the model file and its pictures (all or none).

    ``KeyboardInterrupt`` during training or writing leaves no file behind.
    """
    from featcli import __version__
    from featcli.io.modelfile import ModelMeta

    t0 = time.perf_counter()
    conv = p.network.first_conv()
    before = conv.weight.detach().cpu().numpy().copy() if conv is not None else None
    result = fit(p.network, p.data, p.opts, on_batch=on_batch, on_epoch=on_epoch)
    p.network.cpu()
    training = {"data": p.data.name, **p.opts.record(), "train_images": len(result.train_index),
                "val_images": len(result.val_index), "final": result.final.record(),
                "history": [e.record() for e in result.history], "seconds": round(result.seconds, 3)}
    meta = ModelMeta(tuple(s.text for s in p.stack), tuple(p.data.classes), p.data.input_shape,
                     dict(p.data.loading), training, __version__)
    pictures = _pictures(p, result, before)
    pages = {}
    if p.html is not None:
        from featcli.train.page import train_page

        pages[p.html] = train_page(p, result, pictures, before, command=command).html().encode("utf-8")
    files = write_all(p.model, p.network.state_dict(), meta, pictures, force=p.force,
                      metadata={"featcli:command": command} if command else None, pages=pages)
    return TrainOutcome(p, result, files, time.perf_counter() - t0, meta)
