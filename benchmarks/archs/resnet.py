"""ResNet-50 and ResNet-18 (He et al. 2015) as ``torchvision.models.resnet50``/``resnet18`` define them (v1.5:
the stride on the 3x3 conv).

Stem conv 7x7 s2 p3, BN, ReLU, max pool 3 s2 p1; bottleneck stages of [3, 4, 6, 3] blocks (width 64, 128,
256, 512; expansion 4), a 1x1 strided conv and BN on the shortcut where the shape changes; ``out += identity``
and one ReLU module called three times per block; average pool, ``torch.flatten(x, 1)``, fc. 25,557,032
parameters, as torchvision's. ResNet-18: basic blocks (two 3x3 convs, expansion 1, the ReLU module called twice)
in stages of [2, 2, 2, 2]; 11,689,512 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmarks.archs.common import seeded

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]


class BasicBlock(nn.Module):
    """Two 3x3 convs (the first strided), each with BN; the shortcut added before the last ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out  # type: ignore[no-any-return]


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, each with BN; the shortcut added before the last ReLU."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        out = self.relu(out)
        out = self.conv3(out)
        out = self.bn3(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out  # type: ignore[no-any-return]


class ResNet(nn.Module):
    """torchvision's ``ResNet`` (bottleneck blocks, or ``block=BasicBlock``)."""

    def __init__(self, layers: tuple[int, int, int, int] = (3, 4, 6, 3), num_classes: int = 1000,
                 block: type[BasicBlock] | type[Bottleneck] = Bottleneck) -> None:
        super().__init__()
        self.block = block
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        grow = self.block.expansion
        if stride != 1 or self.inplanes != planes * grow:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * grow, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * grow))
        layers: list[nn.Module] = [self.block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * grow
        layers += [self.block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


@seeded
def resnet50() -> ResNet:
    """ResNet-50, 1000 classes, random weights (seed 0), eval mode."""
    return ResNet((3, 4, 6, 3))


@seeded
def resnet18() -> ResNet:
    """ResNet-18, 1000 classes, random weights (seed 0), eval mode."""
    return ResNet((2, 2, 2, 2), block=BasicBlock)
