"""Small random-init networks in plain torch for the model routes' tests (no torchvision, no download)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


class Functional(nn.Module):
    """A forward of functional calls between modules: a residual ``F.relu(bn(conv(x)) + x)``, a module used
    twice, ``torch.cat``, ``abs``, ``view``, ``F.max_pool2d`` with keywords, ``flatten`` and a functional
    ``linear`` on the module's own parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU()
        self.weight = nn.Parameter(torch.randn(5, 24))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn(self.conv(x)) + x)
        out = self.act(self.conv(out))
        y = torch.cat([out, x.abs()], 1)
        y = F.max_pool2d(y, kernel_size=2, stride=2)
        z = y.view(1, 6, -1).contiguous()
        return F.linear(z.flatten(1)[:, :24], self.weight)


class WrongHead(nn.Module):
    """A head built for 4x4 maps (a Linear of 128 features): a bigger image fails in ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, 2, 1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(x)).flatten(1))


class NoModes(nn.Module):
    """A forward that refuses to run under a torch function mode (as some tensor-subclass code does)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch._C._is_torch_function_mode_enabled():
            raise RuntimeError("no torch function modes here")
        return torch.relu(self.conv(x))
