"""The files a training run writes: the model file and, next to it, its curves, confusion matrix and filters.

``model.safetensors`` comes with ``model.curves.png`` (loss and accuracy per epoch, training and validation),
``model.confusion.png`` (the validation set's confusion matrix) and ``model.filters.png`` (the first conv
layer's filter bank before training, left, and after, right). All of them are written together through
:class:`featcli.io.outputs.PendingOutputs`: an interrupt or a failure leaves none of them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.io.outputs import PendingOutputs, check_output

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["PICTURES", "check_destinations", "picture_paths", "side_by_side", "write_all"]

#: The pictures written next to a model: suffix -> what it shows.
PICTURES = {"curves": "loss and accuracy per epoch", "confusion": "the validation confusion matrix",
            "filters": "the first conv layer's filters before and after training"}


def picture_paths(model: str) -> dict[str, str]:
    """``{"curves": "m.curves.png", ...}`` for the model file ``m.safetensors`` (any other name: its stem).

    >>> picture_paths("out/m.safetensors")["curves"]
    'out/m.curves.png'
    """
    base = model[: -len(".safetensors")] if model.lower().endswith(".safetensors") else str(Path(model).with_suffix(""))
    return {name: f"{base}.{name}.png" for name in PICTURES}


def check_destinations(model: str, pictures: Sequence[str], *, force: bool, inputs: Sequence[str] = ()) -> None:
    """Refuse, before any training, a destination that exists (without ``force``) or cannot be written."""
    from featcli.errors import UsageError

    if not model.lower().endswith(".safetensors"):
        raise UsageError(f"-o {model}: a featcli model is a .safetensors file; give a name ending in .safetensors")
    for path in (model, *pictures):
        check_output(path, force=force, inputs=inputs)


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 16) -> Image.Image:
    """Two pictures next to each other on white, tops aligned."""
    from PIL import Image as PILImage

    out = PILImage.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), "white")
    out.paste(left.convert("RGB"), (0, 0))
    out.paste(right.convert("RGB"), (left.width + gap, 0))
    return out


def write_all(model: str, tensors: Mapping[str, Any], meta: Any, pictures: Mapping[str, Image.Image], *,
              force: bool = False, metadata: Mapping[str, str] | None = None,
              pages: Mapping[str, bytes] | None = None) -> list[str]:
    """Write the model file, its pictures and ``pages`` (``--html``: path -> bytes), all or none; returns the
    paths written, model first.

    The model file is made by :func:`featcli.io.modelfile.write_model` in a private temporary folder and
    published with the pictures, so it obeys the same all-or-none rule.
    """
    from featcli.io.modelfile import write_model
    from featcli.io.png import png_writer

    with tempfile.TemporaryDirectory(prefix="featcli-train-") as tmp:
        staged = os.path.join(tmp, "model.safetensors")
        write_model(staged, tensors, meta)
        with PendingOutputs(force=force) as out, open(staged, "rb") as src:
            out.write(model, lambda fh: shutil.copyfileobj(src, fh))
            for path, image in pictures.items():
                out.write(path, png_writer(image, path, metadata=metadata))
            for path, data in (pages or {}).items():
                out.write(path, lambda fh, data=data: fh.write(data))  # type: ignore[misc]
            return [str(p) for p in out.publish()]
