"""``featcli eval DATA --model M``: a trained network's accuracy on a data set, overall and per class.

The data is loaded as the model was trained (its loading options, resized to its input size); a folder's
class sub-folders are matched to the model's classes by name. ``split="val"`` evaluates only the images the
model was validated on, when DATA is the built-in set it was trained on (its recorded seed and split);
``split=None`` (the command's default) picks ``"val"`` then, and ``"all"`` for any other data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featcli.errors import FeatcliError, UsageError
from featcli.io.modelfile import loading_option
from featcli.train.data import BUILTIN, Dataset, load_data

if TYPE_CHECKING:
    from featcli.engine.network import OpenedModel

__all__ = ["Evaluation", "evaluate", "load_for"]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Counts of one evaluation: ``matrix[true, predicted]`` over the model's classes."""

    data: str
    classes: tuple[str, ...]
    matrix: Any = field(repr=False)  #: (K, K) int64 NumPy array
    split: str = "all"

    @property
    def images(self) -> int:
        return int(self.matrix.sum())

    @property
    def accuracy(self) -> float:
        return float(self.matrix.trace()) / max(1, self.images)

    def per_class(self) -> list[dict[str, Any]]:
        """One row per class that has images: name, images, correct, accuracy."""
        rows = []
        for i, name in enumerate(self.classes):
            n = int(self.matrix[i].sum())
            if n:
                rows.append({"class": name, "images": n, "correct": int(self.matrix[i, i]),
                             "accuracy": int(self.matrix[i, i]) / n})
        return rows

    def record(self) -> dict[str, Any]:
        return {"data": self.data, "split": self.split, "images": self.images, "accuracy": self.accuracy,
                "classes": list(self.classes), "per_class": self.per_class(), "confusion": self.matrix.tolist()}


def load_for(model: OpenedModel, spec: str) -> Dataset:
    """``spec``'s images as ``model`` takes them (built-in sets as they are, folders loaded its way).

    Raises:
        FeatcliError: the images have another input shape than the model's, or a class the model does not know.
    """
    if spec in BUILTIN:
        data = load_data(spec, seed=model.meta.training.get("seed", 0) if spec == "orientation" else 0)
    else:
        c, h, w = model.input_shape
        data = load_data(spec, size=(h, w), load=model.load_options())
    if data.input_shape != model.input_shape:
        got, want = ("x".join(map(str, s)) for s in (data.input_shape, model.input_shape))
        raise FeatcliError(f"{spec} images are {got} but the model takes {want} (its channels: "
                           f"{loading_option(model.meta.loading, 'channels')})")
    unknown = [c for c in data.classes if c not in model.classes]
    if unknown:
        raise FeatcliError(f"{spec}: class {unknown[0]!r} is not one of the model's classes "
                           f"({', '.join(model.classes[:12])}{', ...' if len(model.classes) > 12 else ''})")
    return data


def default_split(model: OpenedModel, data: Dataset) -> str:
    """``"val"`` when ``data`` is what ``model`` was trained on with a validation split, else ``"all"``: an
    evaluation never scores training images unless asked to (``--split all``)."""
    rec = model.meta.training
    return "val" if rec.get("data") == data.name and rec.get("val_split") else "all"


def evaluate(model: OpenedModel, data: Dataset, *, split: str | None = None, batch_size: int = 256) -> Evaluation:
    """Run ``model`` on every image of ``data`` (or its validation split) and count the answers."""
    import torch

    from featcli.train.fit import confusion_matrix, predict
    from featcli.train.fit import split as split_indices

    index = {c: i for i, c in enumerate(model.classes)}
    y = torch.as_tensor([index[data.classes[int(v)]] for v in data.y], dtype=torch.int64)
    x = data.x
    if split is None:
        split = default_split(model, data)
    if split == "val":
        rec = model.meta.training
        if rec.get("data") != data.name or not rec.get("val_split"):
            raise UsageError(f"--split val needs the data the model was trained on with a validation split "
                             f"(it was trained on {rec.get('data', 'unrecorded data')!r})")
        _, val = split_indices(data.y, float(rec["val_split"]), rec.get("seed", 0))  # checked by read_model
        x, y = x[val], y[val]
    elif split != "all":
        raise UsageError(f"--split {split!r}: expected all or val")
    net = model.network()
    pred = predict(net, x, batch_size=batch_size).argmax(1)
    return Evaluation(data.name, model.classes, confusion_matrix(y, pred, len(model.classes)), split)
