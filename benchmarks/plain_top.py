"""The plain PyTorch script a user writes for "the top K activations of each channel over a folder": the peer of
the ``top200`` scenarios of ``python -m benchmarks`` (``benchmarks/top_scenarios.py``).

``python -m benchmarks.plain_top FOLDER K THREADS stack`` runs :data:`STACK`, the 3-conv stack
``conv:out=16,k=3,p=1 relu conv:out=16,k=3,s=2,p=1 relu conv:out=32,k=3,p=1 relu`` with the weights featcli
gives it at ``--seed 0`` (random layer ``i`` is ``torch.manual_seed(i); nn.Conv2d(...)``), and
``python -m benchmarks.plain_top FOLDER K THREADS net MODULE.py WEIGHTS.pt LAYER`` runs ``MODULE.Net`` with a
forward hook on the module named ``LAYER``. For each image (sorted): Pillow decode to RGB, float32 in [0, 1],
forward under ``inference_mode``; then ``torch.topk`` over each channel's positions, merged into the running
best K with another ``torch.topk`` (memory: K per channel, as featcli's). Prints, as JSON, each channel's K best
values, largest first: the scenario checks featcli's answer against them.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

#: featcli's spelling of the stack this script builds by hand.
STACK = ["conv:out=16,k=3,p=1", "relu", "conv:out=16,k=3,s=2,p=1", "relu", "conv:out=32,k=3,p=1", "relu"]


def stack() -> Any:
    import torch
    from torch import nn

    convs = []
    for i, (cin, cout, s) in enumerate(((3, 16, 1), (16, 16, 2), (16, 32, 1))):
        torch.manual_seed(i)
        convs += [nn.Conv2d(cin, cout, 3, s, 1), nn.ReLU()]
    return nn.Sequential(*convs).eval()


def network(module: str, weights: str, layer: str) -> tuple[Any, dict[str, Any]]:
    import torch

    spec = importlib.util.spec_from_file_location("net", module)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.Net().eval()
    net.load_state_dict(torch.load(weights, weights_only=True))
    kept: dict[str, Any] = {}
    net.get_submodule(layer).register_forward_hook(lambda m, i, o: kept.__setitem__("out", o))
    return net, kept


def main(argv: list[str]) -> int:
    import numpy as np
    import torch
    from PIL import Image

    folder, k, threads, kind = Path(argv[0]), int(argv[1]), int(argv[2]), argv[3]
    torch.set_num_threads(threads)
    if kind == "stack":
        net, kept = stack(), None
    else:
        net, kept = network(argv[4], argv[5], argv[6])
    best: Any = None
    with torch.inference_mode():
        for path in sorted(folder.iterdir()):
            with Image.open(path) as im:
                x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
            out = net(x)
            maps = (kept["out"] if kept is not None else out)[0]
            flat = maps.reshape(maps.shape[0], -1)
            vals = flat.topk(min(k, flat.shape[1]), dim=1).values
            best = vals if best is None else torch.cat([best, vals], 1).topk(k, dim=1).values
    print(json.dumps(best.tolist()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
