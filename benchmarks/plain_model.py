"""The plain PyTorch loop a user writes to run a network over a folder: the ``model200`` scenario's peer.

``python -m benchmarks.plain_model FOLDER MODULE.py WEIGHTS.pt HxW THREADS``: import the module's ``Net``, load
the state dict once, then for each image (sorted): Pillow decode to RGB, float32 in [0, 1], bilinear antialiased
resize to HxW, forward under ``inference_mode`` on THREADS torch threads; print how many ran and the last
argmax. The same steps ``featcli run FOLDER --model MODULE.py:Net --weights WEIGHTS.pt --size HxW`` takes,
without the layer table.

``NET`` is the network both run: a ResNet-18 layout at half width (basic blocks 2-2-2-2 of 32, 64, 128 and
256 channels, about 2.8 M parameters), written as a user would, with its residual additions in ``forward``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NET = '''import torch
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.down(x))


class Net(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 7, 2, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        widths, layers, cin = (32, 64, 128, 256), [], 32
        for i, w in enumerate(widths):
            layers += [Block(cin, w, 1 if i == 0 else 2), Block(w, w, 1)]
            cin = w
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))
'''


def write_net(folder: Path) -> tuple[Path, Path]:
    """``net.py`` and its random weights (seed 0) in ``folder``."""
    import torch

    module = folder / "net.py"
    module.write_text(NET)
    torch.manual_seed(0)
    net = _load(module).Net().eval()
    weights = folder / "net.pt"
    torch.save(net.state_dict(), weights)
    return module, weights


def _load(path: Path) -> object:
    spec = importlib.util.spec_from_file_location("plain_model_net", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    folder, module, weights, size, threads = argv
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    h, w = (int(v) for v in size.split("x"))
    torch.set_num_threads(int(threads))
    net = _load(Path(module)).Net().eval()  # type: ignore[attr-defined]
    net.load_state_dict(torch.load(weights, weights_only=True))
    n, last = 0, -1
    with torch.inference_mode():
        for path in sorted(Path(folder).iterdir()):
            with Image.open(path) as im:
                a = np.array(im.convert("RGB"))
            x = torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255)
            x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
            last = int(net(x).argmax())
            n += 1
    print(n, last)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
