"""MobileNetV2, MobileNetV3 (Large and Small) and EfficientNet-B0 as ``torchvision.models`` defines them.

- MobileNetV2 (Sandler et al. 2018): inverted residuals (1x1 expand, 3x3 depthwise via ``groups``, 1x1
  linear project), ReLU6, ``x + self.conv(x)``; ``F.adaptive_avg_pool2d`` and ``torch.flatten`` in
  ``forward``. 3,504,872 parameters.
- MobileNetV3 (Howard et al. 2019): inverted residuals with squeeze-excitation (Hardsigmoid gate,
  ``scale * x``), Hardswish or ReLU, BN eps 0.001, ``result += input``. Large 5,483,032, Small 2,542,856.
- EfficientNet-B0 (Tan & Le 2019): MBConv with SiLU and squeeze-excitation (Sigmoid gate), stochastic depth
  on the residual branch (the identity in eval). 5,288,548 parameters.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.archs.common import ConvNormActivation, SqueezeExcitation, StochasticDepth, make_divisible, seeded

__all__ = ["EfficientNet", "MBConv", "MobileNetV2", "MobileNetV3", "efficientnet_b0", "mobilenet_v2",
           "mobilenet_v3_large", "mobilenet_v3_small"]


def _init(model: nn.Module, linear: str) -> None:
    """torchvision's init: convs Kaiming (fan out), norms 1 and 0, linears ``normal`` (std 0.01) or ``uniform``
    (+-1/sqrt(out))."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            if linear == "normal":
                nn.init.normal_(m.weight, 0, 0.01)
            else:
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand (unless t = 1), depthwise, linear project; the input added at stride 1."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormActivation(inp, hidden, kernel_size=1, activation=nn.ReLU6))
        layers += [ConvNormActivation(hidden, hidden, stride=stride, groups=hidden, activation=nn.ReLU6),
                   nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)  # type: ignore[no-any-return]
        return self.conv(x)  # type: ignore[no-any-return]


class MobileNetV2(nn.Module):
    """torchvision's ``MobileNetV2`` at width 1.0."""

    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        cin, last = 32, 1280
        features: list[nn.Module] = [ConvNormActivation(3, cin, stride=2, activation=nn.ReLU6)]
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(ConvNormActivation(cin, last, kernel_size=1, activation=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last, num_classes))
        _init(self, "normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)  # type: ignore[no-any-return]


#: MobileNetV3 blocks: input, kernel, expanded, output channels, squeeze-excitation, Hardswish, stride.
V3_LARGE = ((16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2), (24, 3, 72, 24, False, False, 1),
            (24, 5, 72, 40, True, False, 2), (40, 5, 120, 40, True, False, 1), (40, 5, 120, 40, True, False, 1),
            (40, 3, 240, 80, False, True, 2), (80, 3, 200, 80, False, True, 1), (80, 3, 184, 80, False, True, 1),
            (80, 3, 184, 80, False, True, 1), (80, 3, 480, 112, True, True, 1), (112, 3, 672, 112, True, True, 1),
            (112, 5, 672, 160, True, True, 2), (160, 5, 960, 160, True, True, 1), (160, 5, 960, 160, True, True, 1))
V3_SMALL = ((16, 3, 16, 16, True, False, 2), (16, 3, 72, 24, False, False, 2), (24, 3, 88, 24, False, False, 1),
            (24, 5, 96, 40, True, True, 2), (40, 5, 240, 40, True, True, 1), (40, 5, 240, 40, True, True, 1),
            (40, 5, 120, 48, True, True, 1), (48, 5, 144, 48, True, True, 1), (48, 5, 288, 96, True, True, 2),
            (96, 5, 576, 96, True, True, 1), (96, 5, 576, 96, True, True, 1))

_v3_norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)


class V3Block(nn.Module):
    """MobileNetV3's inverted residual: expand, depthwise, squeeze-excitation (Hardsigmoid gate), project."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hs: bool, stride: int) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        act = nn.Hardswish if hs else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvNormActivation(cin, expanded, kernel_size=1, norm=_v3_norm, activation=act))
        layers.append(ConvNormActivation(expanded, expanded, kernel, stride, groups=expanded, norm=_v3_norm,
                                         activation=act))
        if se:
            squeeze = make_divisible(expanded // 4, 8)
            layers.append(SqueezeExcitation(expanded, squeeze, scale_activation=nn.Hardsigmoid))
        layers.append(ConvNormActivation(expanded, cout, kernel_size=1, norm=_v3_norm, activation=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result += x
        return result  # type: ignore[no-any-return]


class MobileNetV3(nn.Module):
    """torchvision's ``MobileNetV3`` at width 1.0: ``setting`` is :data:`V3_LARGE` or :data:`V3_SMALL`."""

    def __init__(self, setting: tuple[tuple[int, int, int, int, bool, bool, int], ...], last_channel: int,
                 num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvNormActivation(3, setting[0][0], stride=2, norm=_v3_norm,
                                                      activation=nn.Hardswish)]
        layers += [V3Block(*cnf) for cnf in setting]
        lastconv = 6 * setting[-1][3]
        layers.append(ConvNormActivation(setting[-1][3], lastconv, kernel_size=1, norm=_v3_norm,
                                         activation=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(lastconv, last_channel), nn.Hardswish(inplace=True),
                                        nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes))
        _init(self, "normal")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)  # type: ignore[no-any-return]


class MBConv(nn.Module):
    """EfficientNet's block: expand (unless 1), depthwise, squeeze-excitation (SiLU, Sigmoid gate), project;
    at stride 1 with equal channels the branch goes through stochastic depth and ``result += input``."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int, sd_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        expanded = make_divisible(cin * expand, 8)
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvNormActivation(cin, expanded, kernel_size=1, activation=nn.SiLU))
        layers.append(ConvNormActivation(expanded, expanded, kernel, stride, groups=expanded, activation=nn.SiLU))
        layers.append(SqueezeExcitation(expanded, max(1, cin // 4), activation=partial(nn.SiLU, inplace=True)))
        layers.append(ConvNormActivation(expanded, cout, kernel_size=1, activation=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.block(x)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += x
        return result  # type: ignore[no-any-return]


#: EfficientNet-B0 stages: expand ratio, kernel, stride, input and output channels, blocks.
B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3),
      (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class EfficientNet(nn.Module):
    """torchvision's ``EfficientNet`` for B0 (width and depth 1.0): stages of MBConv blocks whose stochastic
    depth grows linearly to ``stochastic_depth_prob``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2, stochastic_depth_prob: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [ConvNormActivation(3, B0[0][3], stride=2, activation=nn.SiLU)]
        total, block_id = sum(s[5] for s in B0), 0
        for expand, kernel, stride, cin, cout, n in B0:
            stage: list[nn.Module] = []
            for i in range(n):
                sd = stochastic_depth_prob * block_id / total
                stage.append(MBConv(expand, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout, sd))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last = 4 * B0[-1][4]
        layers.append(ConvNormActivation(B0[-1][4], last, kernel_size=1, activation=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last, num_classes))
        _init(self, "uniform")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)  # type: ignore[no-any-return]


@seeded
def mobilenet_v2() -> MobileNetV2:
    """MobileNetV2, 1000 classes, random weights (seed 0), eval mode."""
    return MobileNetV2()


@seeded
def mobilenet_v3_large() -> MobileNetV3:
    """MobileNetV3-Large, 1000 classes, random weights (seed 0), eval mode."""
    return MobileNetV3(V3_LARGE, 1280)


@seeded
def mobilenet_v3_small() -> MobileNetV3:
    """MobileNetV3-Small, 1000 classes, random weights (seed 0), eval mode."""
    return MobileNetV3(V3_SMALL, 1024)


@seeded
def efficientnet_b0() -> EfficientNet:
    """EfficientNet-B0, 1000 classes, random weights (seed 0), eval mode."""
    return EfficientNet()
