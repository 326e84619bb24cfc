"""The example stacks (``@resnet18``, ``@vgg11``, ``@lenet5``, ``@unet``) against hand-written torch networks.

Each network is written out in plain torch, the way torchvision (or the paper) builds it, and records the
shape after every module in the order featcli lists its rows (a side branch's modules just before the add).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from featcli.errors import SpecError
from featcli.shape.infer import infer
from featcli.stages.spec import parse_stages
from featcli.stages.stacks import expand, stack_names

torch = pytest.importorskip("torch")
nn = torch.nn


class Rec:
    """Runs modules on a tensor and records each output shape."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.params = 0

    def __call__(self, x: Any, *mods: Callable[[Any], Any]) -> Any:
        for m in mods:
            x = m(x)
            if isinstance(m, nn.Module):
                self.params += sum(p.numel() for p in m.parameters())
            self.shapes.append(tuple(x.shape))
        return x

    def mark(self, x: Any) -> Any:  # save:, add:, cat: rows
        self.shapes.append(tuple(x.shape))
        return x


def resnet18(r: Rec, x: Any) -> Any:
    """torchvision.models.resnet18, written out (BasicBlock, expansion 1)."""
    x = r(x, nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    c_in = 64
    for c in (64, 128, 256, 512):
        for b in range(2):
            s = 2 if c != 64 and b == 0 else 1
            identity = r.mark(x)
            y = r(x, nn.Conv2d(c_in, c, 3, s, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                  nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
            if s != 1 or c_in != c:
                identity = r(identity, nn.Conv2d(c_in, c, 1, s, bias=False), nn.BatchNorm2d(c))
            x = r(r.mark(y + identity), nn.ReLU())
            c_in = c
    return r(x, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 1000))


def vgg11(r: Rec, x: Any) -> Any:
    """torchvision.models.vgg11 (configuration A, no batch norm), written out."""
    c_in = 3
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if v == "M":
            x = r(x, nn.MaxPool2d(2))
        else:
            x = r(x, nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU())
            c_in = int(v)
    return r(x, nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
             nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))


def lenet5(r: Rec, x: Any) -> Any:
    return r(x, nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
             nn.Conv2d(16, 120, 5), nn.Tanh(), nn.Flatten(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))


def unet(r: Rec, x: Any) -> Any:
    """A 4-level U-Net with padded double convs (3x3 conv, bn, relu, twice) and transposed-conv upsampling."""
    def double(x: Any, c_in: int, c: int) -> Any:
        return r(x, nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                 nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())

    skips = []
    c_in = 3
    for i, c in enumerate((64, 128, 256, 512)):
        if i:
            x = r(x, nn.MaxPool2d(2))
        x = double(x, c_in, c)
        skips.append(r.mark(x))
        c_in = c
    x = double(r(x, nn.MaxPool2d(2)), 512, 1024)
    for c in (512, 256, 128, 64):
        x = r(x, nn.ConvTranspose2d(2 * c, c, 2, 2))
        x = double(r.mark(torch.cat((x, skips.pop()), 1)), 2 * c, c)
    return r(x, nn.Conv2d(64, 2, 1))


@pytest.mark.parametrize(("name", "net", "shape", "params"), [
    ("resnet18", resnet18, (1, 3, 224, 224), 11_689_512),
    ("vgg11", vgg11, (1, 3, 224, 224), 132_863_336),
    ("lenet5", lenet5, (1, 1, 32, 32), 61_706),
    ("unet", unet, (1, 3, 128, 160), None),
])
def test_example_stacks_equal_hand_written_torch(name: str, net: Any, shape: tuple[int, int, int, int],
                                                 params: int | None) -> None:
    report = infer(shape, parse_stages(expand([f"@{name}"])))
    rec = Rec()
    with torch.device("meta"):  # shapes and parameter counts only: no memory, no compute
        net(rec, torch.zeros(shape))
    assert [r.out_shape for r in report.stages] == rec.shapes
    assert report.params == rec.params
    if params is not None:
        assert report.params == params


def test_resnet18_blocks_on_224() -> None:
    report = infer((1, 3, 224, 224), parse_stages(expand(["@resnet18"])))
    adds = [r.out_shape for r in report.stages if r.op == "add"]
    assert adds == [(1, 64, 56, 56)] * 2 + [(1, 128, 28, 28)] * 2 + [(1, 256, 14, 14)] * 2 + [(1, 512, 7, 7)] * 2
    assert report.output == (1, 1000)


def test_stack_files(tmp_path: Path) -> None:
    assert stack_names() == ["lenet5", "resnet18", "unet", "vgg11"]
    f = tmp_path / "block.txt"
    f.write_text("# a residual block\nsave:a conv:k=3,p=1   # same size\nbn\nadd:a(\n  conv:k=1\n) relu\n@lenet5\n")
    texts = expand([f"@{f}"])
    assert texts[:5] == ["save:a", "conv:k=3,p=1", "bn", "add:a(\n  conv:k=1\n)", "relu"]
    assert texts[5] == "conv:out=6,k=5"
    with pytest.raises(SpecError, match=r"no stack named 'resnet19' \(did you mean @resnet18\?\)"):
        expand(["@resnet19"])
    with pytest.raises(SpecError, match="not found"):
        expand([f"@{tmp_path / 'missing.txt'}"])
    (tmp_path / "loop.txt").write_text(f"relu @{tmp_path / 'loop.txt'}\n")
    with pytest.raises(SpecError, match="more than 8 deep"):
        expand([f"@{tmp_path / 'loop.txt'}"])
