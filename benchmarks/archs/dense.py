"""Dense-prediction networks: a small U-Net and a small FPN, written as their reference implementations are.

- U-Net (Ronneberger et al. 2015) as the widely used ``milesial/Pytorch-UNet`` writes it: ``DoubleConv``
  (two 3x3 conv, BN, ReLU), ``Down`` (max pool 2, DoubleConv), ``Up`` (``nn.Upsample(scale_factor=2,
  mode='bilinear', align_corners=True)`` or a 2x2 stride-2 ``ConvTranspose2d``, ``F.pad`` to the skip's size,
  ``torch.cat([x2, x1], dim=1)``, DoubleConv), a 1x1 ``OutConv``; at a quarter of its width (16 to 256
  channels), 2 classes.
- FPN (Lin et al. 2017) as ``torchvision.ops.FeaturePyramidNetwork`` writes it (lateral 1x1 convs, top-down
  ``F.interpolate(..., scale_factor=2, mode='nearest')`` added to the lateral, a 3x3 conv per level, an extra
  level by ``F.max_pool2d(x, 1, 2, 0)``), on a small strided-conv backbone (C2-C5 at strides 4-32); the
  output is an ordered dict of the levels, as torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.archs.common import ConvNormActivation, seeded

__all__ = ["FPN", "UNet", "fpn", "unet", "unet_convt"]


class DoubleConv(nn.Module):
    """(3x3 conv, BN, ReLU) twice."""

    def __init__(self, cin: int, cout: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or cout
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, mid, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
            nn.Conv2d(mid, cout, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.double_conv(x)  # type: ignore[no-any-return]


class Down(nn.Module):
    """Max pool 2, then DoubleConv."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool_conv(x)  # type: ignore[no-any-return]


class Up(nn.Module):
    """Upsample ``x1`` by 2 (bilinear or transposed conv), pad it to ``x2``, concatenate ``[x2, x1]``, DoubleConv."""

    def __init__(self, cin: int, cout: int, bilinear: bool = True) -> None:
        super().__init__()
        self.up: nn.Module
        if bilinear:
            self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
            self.conv = DoubleConv(cin, cout, cin // 2)
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
            self.conv = DoubleConv(cin, cout)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = self.up(x1)
        dy, dx = x2.size()[2] - x1.size()[2], x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)  # type: ignore[no-any-return]


class OutConv(nn.Module):
    """The 1x1 conv to class scores."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # type: ignore[no-any-return]


class UNet(nn.Module):
    """Four downs and four ups with skip concatenations, base width ``base``."""

    def __init__(self, n_channels: int = 3, n_classes: int = 2, bilinear: bool = True, base: int = 16) -> None:
        super().__init__()
        b, factor = base, 2 if bilinear else 1
        self.inc = DoubleConv(n_channels, b)
        self.down1, self.down2, self.down3 = Down(b, 2 * b), Down(2 * b, 4 * b), Down(4 * b, 8 * b)
        self.down4 = Down(8 * b, 16 * b // factor)
        self.up1 = Up(16 * b, 8 * b // factor, bilinear)
        self.up2 = Up(8 * b, 4 * b // factor, bilinear)
        self.up3 = Up(4 * b, 2 * b // factor, bilinear)
        self.up4 = Up(2 * b, b, bilinear)
        self.outc = OutConv(b, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        x = self.up4(x, x1)
        return self.outc(x)  # type: ignore[no-any-return]


class FeaturePyramidNetwork(nn.Module):
    """torchvision's ``FeaturePyramidNetwork`` with its ``LastLevelMaxPool``: ordered dict in, ordered dict out."""

    def __init__(self, in_channels: list[int], out_channels: int) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.layer_blocks = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names, feats = list(x.keys()), list(x.values())
        last_inner = self.inner_blocks[-1](feats[-1])
        results = [self.layer_blocks[-1](last_inner)]
        for idx in range(len(feats) - 2, -1, -1):
            inner_lateral = self.inner_blocks[idx](feats[idx])
            inner_top_down = F.interpolate(last_inner, scale_factor=2, mode="nearest")
            last_inner = inner_lateral + inner_top_down
            results.insert(0, self.layer_blocks[idx](last_inner))
        names.append("pool")
        results.append(F.max_pool2d(results[-1], 1, 2, 0))
        return OrderedDict(zip(names, results, strict=True))


class FPN(nn.Module):
    """A strided-conv backbone (stem at stride 2, stages C2-C5 at strides 4-32 of ``widths``) and an FPN of
    ``out_channels`` on its four stages."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), out_channels: int = 64) -> None:
        super().__init__()
        self.stem = ConvNormActivation(3, 16, stride=2)
        cins = (16, *widths[:-1])
        self.stages = nn.ModuleList(nn.Sequential(ConvNormActivation(cin, c, stride=2), ConvNormActivation(c, c))
                                    for cin, c in zip(cins, widths, strict=True))
        self.fpn = FeaturePyramidNetwork(list(widths), out_channels)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            feats[f"c{i + 2}"] = x
        return self.fpn(feats)  # type: ignore[no-any-return]


@seeded
def unet() -> UNet:
    """The small U-Net with bilinear upsampling, random weights (seed 0), eval mode."""
    return UNet(bilinear=True)


@seeded
def unet_convt() -> UNet:
    """The small U-Net with transposed-conv upsampling, random weights (seed 0), eval mode."""
    return UNet(bilinear=False)


@seeded
def fpn() -> FPN:
    """The small backbone and FPN, random weights (seed 0), eval mode."""
    return FPN()
