"""Which backend runs a plan, how it is made, and the input it takes from a loaded image.

:func:`choose` picks ``numpy`` or ``torch`` once per run (capabilities depend on the stack, not on the input
size): NumPy when asked, or on ``--engine auto`` when the device is the CPU and the NumPy backend runs every
stage; a trained network always runs on torch. :func:`make` builds the backend and owns the thread policy
(torch's thread count is process-wide). :func:`to_input` turns a loaded image into what the backend takes,
with pixel values scaled by the one rule, :meth:`featcli.enums.Scale.steps`.

The protocol every backend meets is :class:`featcli.engine.backend.Backend`; adding one means teaching these
three functions when to pick it, how to make it and what it reads.

>>> torch_threads(None), torch_threads(3, batch=True)
(None, 3)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from featcli.enums import Engine, Scale
from featcli.errors import UsageError

if TYPE_CHECKING:
    from featcli.engine.backend import Backend
    from featcli.engine.plan import Plan
    from featcli.io.images import LoadedImage
    from featcli.io.normalize import Normalize

__all__ = ["NAMES", "choose", "make", "to_input", "torch_threads"]

#: The backends, by the name a run's records give them (``ImageOutcome.engine``).
NAMES = ("numpy", "torch")


def choose(plan: Plan, device: Any, engine: Engine, *, trained: bool = False) -> str:
    """``numpy`` or ``torch`` for ``plan`` on ``device`` as ``--engine`` asks.

    Raises:
        UsageError: ``--engine numpy`` for a trained network, or for a stack (or device) it cannot run, naming
            the first reason.
    """
    if trained:  # a trained network: its tensors are torch's (no silent fallback)
        if engine is Engine.NUMPY:
            raise UsageError("--engine numpy does not run trained models (featcli model files run on torch); "
                             "use --engine auto or torch")
        return "torch"
    if engine is Engine.TORCH:
        return "torch"
    from featcli.engine.numpy_backend import OPS

    reasons = [r for r in (OPS.why_not(s) for s in plan.stages) if r]
    if str(device) != "cpu":
        reasons.insert(0, f"the device is {device}")
    if engine is Engine.NUMPY and reasons:
        raise UsageError(f"--engine numpy cannot run this stack ({reasons[0]}); use --engine auto")
    return "torch" if reasons else "numpy"


def torch_threads(threads: int | None, *, batch: bool = False) -> int | None:
    """torch's thread count for a run: ``--threads`` when given; for a batch, half the cores (the other half
    decode and encode images); for one image, None (torch's own default)."""
    if threads:
        return threads
    return max(1, (os.cpu_count() or 1) // 2) if batch else None


def make(name: str, device: Any = "cpu", threads: int | None = None, *, batch: bool = False) -> Backend:
    """The backend called ``name`` on ``device``. Making the torch backend sets torch's process-wide thread
    count (:func:`torch_threads`); the NumPy backend runs on the CPU with NumPy's own threads."""
    if name == "numpy":
        from featcli.engine.numpy_backend import NumpyBackend

        return NumpyBackend()
    if name != "torch":
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(NAMES)}")  # pragma: no cover
    import torch

    from featcli.engine.torch_backend import TorchBackend

    n = torch_threads(threads, batch=batch)
    if n:
        torch.set_num_threads(n)
    return TorchBackend(device)


def to_input(image: LoadedImage, name: str, scale: Scale = Scale.UNIT, device: Any = "cpu",
             normalize: Normalize | None = None) -> Any:
    """The image as backend ``name``'s input, values ``array / value_max * scale`` (:meth:`Scale.steps`), then
    ``normalize``d per channel: the HWC array itself for NumPy (:class:`featcli.engine.numpy_backend.HWC`,
    scaled as a stage reads it; its ``(1, C, H, W)`` planes when normalised), a ``(1, C, H, W)`` float32 tensor
    on ``device`` for torch (:func:`featcli.io.images.to_tensor`)."""
    if name == "numpy":
        from featcli.engine.numpy_backend import HWC

        hwc = HWC(image.array, image.value_max, scale)
        return hwc if normalize is None else normalize.apply(hwc.planes())
    from featcli.io.images import to_tensor

    x = to_tensor(image, scale=scale, device=device)
    return x if normalize is None else normalize.apply(x)
