"""The plain autograd script a user writes for Grad-CAM over a folder: the ``cam20`` scenario's peer.

``python -m benchmarks.plain_cam FOLDER THREADS``: build ResNet-18 once (``benchmarks.archs:resnet18``, seeded
random weights, eval mode), hook ``layer4`` (its output retained for the gradient), then for each image
(sorted): Pillow decode to RGB, float32 in [0, 1], forward, the gradient of the predicted class's score at
``layer4`` (``torch.autograd.grad``: only the part of backward that reaches the layer), Grad-CAM's weights (the
gradient's spatial mean) and ``ReLU`` of the weighted sum, upsampled bilinearly to the image and its peak. The
steps ``featcli cam FOLDER --model benchmarks.archs:resnet18 --layer layer4`` takes, without its table.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    folder, threads = argv
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from benchmarks.archs import resnet18

    torch.set_num_threads(int(threads))
    net = resnet18()
    kept: dict[str, Any] = {}
    net.layer4.register_forward_hook(lambda _, __, out: kept.__setitem__("a", out))
    n, peak = 0, (-1, -1)
    for path in sorted(Path(folder).iterdir()):
        started = time.perf_counter()
        with Image.open(path) as im:
            a = np.array(im.convert("RGB"))
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float().div(255)
        y = net(x)
        c = int(y[0].argmax())
        (g,) = torch.autograd.grad(y[0, c], kept["a"])
        cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * kept["a"]).sum(dim=1)).detach()
        heat = F.interpolate(cam[None], size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0]
        flat = int(heat.argmax())
        peak = (flat // heat.shape[1], flat % heat.shape[1])
        n += 1
        print(f"seconds {time.perf_counter() - started:.6f}")
    print(n, peak)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
