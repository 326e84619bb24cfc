"""Building blocks the reference architectures share, written as torchvision writes them (no torchvision).

``ConvNormActivation`` is torchvision's ``Conv2dNormActivation``: an ``nn.Sequential`` subclass (so featcli's
module route gives it no row of its own, as for the real one), padding ``(k - 1) // 2 * d``, bias only without
a norm. ``SqueezeExcitation`` is ``torchvision.ops.SqueezeExcitation``: ``scale * input`` in its forward.
``seeded`` makes a factory build the same weights every call without touching the caller's random state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

__all__ = ["ConvNormActivation", "SqueezeExcitation", "StochasticDepth", "make_divisible", "seeded"]

M = TypeVar("M", bound=nn.Module)


def seeded(factory: Callable[[], M]) -> Callable[[], M]:
    """``factory`` built under ``torch.manual_seed(0)`` (the global random state restored after), in eval mode."""

    @functools.wraps(factory)
    def build() -> M:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return factory().eval()

    return build


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's ``_make_divisible``: ``v`` rounded to a multiple of ``divisor``, never 10% below ``v``."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvNormActivation(nn.Sequential):
    """Conv2d, a norm (BatchNorm2d unless ``norm`` is None) and an activation (None: none), torchvision's
    ``Conv2dNormActivation``."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 norm: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
                 activation: Callable[..., nn.Module] | None = nn.ReLU, dilation: int = 1) -> None:
        padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation=dilation, groups=groups,
                                             bias=norm is None)]
        if norm is not None:
            layers.append(norm(cout))
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018), ``torchvision.ops.SqueezeExcitation``: global average, two 1x1
    convs, a gate, and the input scaled by it."""

    def __init__(self, channels: int, squeeze: int, activation: Callable[..., nn.Module] = nn.ReLU,
                 scale_activation: Callable[..., nn.Module] = nn.Sigmoid) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self._scale(x)
        return scale * x


class StochasticDepth(nn.Module):
    """``torchvision.ops.StochasticDepth`` ("row" mode): drops whole samples of a residual branch in training
    (survivors scaled by ``1 / (1 - p)``); the identity in eval."""

    def __init__(self, p: float, mode: str = "row") -> None:
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * noise.div_(keep)
