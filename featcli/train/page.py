"""``featcli train --html FILE``: the training as one page, written with the model file (all or none).

One section: what was trained (data, stack table with formulas, parameters), the loss and accuracy curves
(inline SVG, a value per point) and the epoch table, the confusion matrix (a table and its picture), and the
first conv layer's filters before and after training, as map grids with their values under the mouse (one
colour scale per bank, symmetric about 0, as ``model.filters.png``) and as that picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from featcli.render.page import Page, Section

if TYPE_CHECKING:
    from PIL import Image

    from featcli.train.fit import FitResult
    from featcli.train.service import Prepared

__all__ = ["train_page"]


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}%"


def _filters(sec: Section, before: Any, after: Any, in_labels: Sequence[str] | None) -> None:
    """The bank before and after as map grids: one tile per (output, input) channel pair."""
    from featcli.enums import Norm
    from featcli.render import GridOptions, Tile

    tiles = []
    for name, w in (("before", before), ("after", after)):
        for o in range(w.shape[0]):
            for i in range(w.shape[1]):
                inp = in_labels[i] if in_labels else f"in{i}"
                tiles.append(Tile(f"{name} · out{o} · {inp}", w[o, i], stage=name))
    opts = GridOptions(norm=Norm.STAGE, cmap="RdBu_r", tile_px=64)
    sec.maps(tiles, opts, titles={"before": "first conv layer: filters before training (random init)",
                                  "after": "first conv layer: filters after training"})


def train_page(p: Prepared, result: FitResult, pictures: Mapping[str, Image.Image], before: Any, *,
               command: str = "") -> Page:
    """The page of a finished training (see the module docstring)."""
    import numpy as np

    page = Page("featcli train", command=command)
    sec = Section(f"{p.data.name} → {p.model}", anchor="training")
    report = p.plan.report
    sec.text(f"{len(p.data):,} images {'x'.join(map(str, p.data.input_shape))} in {len(p.data.classes)} classes "
             f"({len(result.train_index):,} for training, {len(result.val_index):,} held out); "
             f"{report.params:,} parameters; {len(result.history)} epochs in {result.seconds:.1f} s", note=True)
    sec.table(["#", "stage", "output", "formula", "params", "MACs"],
              [[str(r.index), r.spec, "x".join(map(str, r.out_shape)), "; ".join(r.formulas), f"{r.params:,}",
                f"{r.macs:,}"] for r in report.stages], wrap=(3,), numeric=(4, 5), caption="the stack trained")
    rows = [e.record() for e in result.history]
    loss = {"training": [(float(r["epoch"]), r["train_loss"]) for r in rows if r["train_loss"] is not None],
            "validation": [(float(r["epoch"]), r["val_loss"]) for r in rows if r["val_loss"] is not None]}
    acc = {"training": [(float(r["epoch"]), r["train_acc"]) for r in rows if r["train_acc"] is not None],
           "validation": [(float(r["epoch"]), r["val_acc"]) for r in rows if r["val_acc"] is not None]}
    sec.heading("loss and accuracy per epoch", anchor="curves")
    sec.curves("loss", {k: v for k, v in loss.items() if v})
    sec.curves("accuracy", {k: v for k, v in acc.items() if v}, percent=True)
    sec.table(["epoch", "loss", "accuracy", "val loss", "val accuracy", "s"],
              [[str(r["epoch"]), f"{r['train_loss']:.4f}" if r["train_loss"] is not None else "",
                _pct(r["train_acc"]), f"{r['val_loss']:.4f}" if r["val_loss"] is not None else "",
                _pct(r["val_acc"]), f"{r['seconds']:.2f}"] for r in rows], numeric=(1, 2, 3, 4, 5))
    held = "validation" if len(result.val_index) else "training"
    sec.heading(f"confusion matrix ({held} set; rows: true class, columns: predicted)", anchor="confusion")
    classes = [str(c) for c in p.data.classes]
    m = np.asarray(result.confusion)
    sec.table(["true \\ predicted", *classes],
              [[c, *(str(int(v)) for v in m[k])] for k, c in enumerate(classes)],
              numeric=range(1, len(classes) + 1))
    names = {path: name for name, path in p.pictures.items()}
    for path, image in pictures.items():
        if names.get(path) == "confusion":
            sec.picture(image, f"{path}: the confusion matrix as written next to the model")
    conv = p.network.first_conv()
    if conv is not None and before is not None:
        from featcli.stages.registry import Op

        sees_image = p.plan.stages[0].op is Op.CONV
        labels = {1: ("gray",), 3: ("R", "G", "B")}.get(conv.in_channels) if sees_image else None
        sec.heading("filter banks", anchor="filters")
        _filters(sec, np.asarray(before, np.float32), conv.weight.detach().cpu().numpy().astype(np.float32), labels)
        for path, image in pictures.items():
            if names.get(path) == "filters":
                sec.picture(image, f"{path}: before (left) and after (right)")
    page.add(sec)
    return page
