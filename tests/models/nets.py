"""Small random-init networks in plain torch for the model routes' tests (no torchvision, no download)."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet's basic block with a strided 1x1 downsample on the shortcut: a residual add."""

    def __init__(self, cin: int = 8, cout: int = 16, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.downsample(x))


class TinyResNet(nn.Module):
    """Stem, one residual block, a concatenation of two branches, global pooling and a 10-class head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.block = BasicBlock(8, 16, 2)
        self.left = nn.Conv2d(16, 4, 1)
        self.right = nn.Conv2d(16, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(self.stem(x))
        x = torch.cat([self.left(x), self.right(x)], 1)
        return self.fc(self.flatten(self.pool(x)))


class PNet(nn.Module):
    """MTCNN's P-Net shape: PReLUs, a ceil_mode pool and a head with two outputs (boxes, face probabilities)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, 3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, 3)
        self.prelu2 = nn.PReLU(16)
        self.conv4_1 = nn.Conv2d(16, 2, 1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu2(self.conv2(self.pool1(self.prelu1(self.conv1(x)))))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


def tiny_resnet() -> TinyResNet:
    """A factory, as ``--model`` accepts one."""
    torch.manual_seed(0)
    return TinyResNet().eval()


NOT_A_MODULE = 42
