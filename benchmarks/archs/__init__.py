"""Real architectures in plain torch (no torchvision, no downloads): the fixtures of the coverage figure.

Each is written as its reference implementation writes it, functional ops in ``forward`` included
(``out += identity``, ``torch.cat``, ``scale * x``, ``torch.flatten(x, 1)``, ``F.interpolate``), so featcli's
module route meets what users bring. Every factory takes no arguments, builds seeded random weights and
returns the module in eval mode: ``featcli run IMAGE --model benchmarks.archs:resnet50 --size 224x224``.
:data:`ARCHS` names each with its input size and, for the classifiers, torchvision's published parameter
count (the tests assert equality: the definitions are torchvision's). ``benchmarks/coverage.py`` measures
the share of their layer rows the formula engine predicts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from benchmarks.archs.dense import fpn, unet, unet_convt
from benchmarks.archs.mobile import efficientnet_b0, mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small
from benchmarks.archs.resnet import resnet18, resnet50

__all__ = ["ARCHS", "Arch", "efficientnet_b0", "fpn", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
           "resnet18", "resnet50", "unet", "unet_convt"]


@dataclass(frozen=True)
class Arch:
    """One architecture: its factory (``benchmarks.archs:NAME``), the input side it runs at and the parameter
    count its reference publishes (None for the small dense networks, which have no published figure)."""

    name: str
    factory: Callable[[], nn.Module]
    size: int
    params: int | None

    @property
    def target(self) -> str:
        """The ``--model`` value that loads it."""
        return f"benchmarks.archs:{self.name}"


ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("resnet50", resnet50, 224, 25_557_032),
    Arch("resnet18", resnet18, 224, 11_689_512),
    Arch("mobilenet_v2", mobilenet_v2, 224, 3_504_872),
    Arch("mobilenet_v3_large", mobilenet_v3_large, 224, 5_483_032),
    Arch("mobilenet_v3_small", mobilenet_v3_small, 224, 2_542_856),
    Arch("efficientnet_b0", efficientnet_b0, 224, 5_288_548),
    Arch("unet", unet, 256, None),
    Arch("unet_convt", unet_convt, 256, None),
    Arch("fpn", fpn, 256, None),
)}
