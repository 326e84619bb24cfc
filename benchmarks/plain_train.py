"""A plain PyTorch training loop, the baseline of ``featcli train`` (benchmarks/train_scenarios.py).

The same network (written by hand as ``nn.Sequential``, each learnable layer initialised under
``torch.manual_seed(seed + i)`` as featcli's plan seeds its i-th random layer), the same data and stratified
split, the same optimizer, batches and epochs as ``featcli train``; the loop is the textbook one. Prints one
JSON line: the final validation accuracy and the seconds of the loop (data loading and imports excluded). Like
featcli it reports each epoch's training loss and accuracy and the validation accuracy.

    python -m benchmarks.plain_train digits --epochs 15 --lr 0.003 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch import nn

#: The stacks of the benchmark, written by hand (featcli writes the same from the stage text).
NETS: dict[str, tuple[str, Callable[[], list[nn.Module]]]] = {
    "digits": ("conv:out=16,k=3,p=1 relu maxpool:k=2 conv:out=32,k=3,p=1 relu maxpool:k=2 flatten linear:out=64 "
               "relu linear:out=10",
               lambda: [nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                        nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 2 * 2, 64), nn.ReLU(),
                        nn.Linear(64, 10)]),
    "orientation": ("conv:out=4,k=3 abs gap flatten linear:out=4",
                    lambda: [nn.Conv2d(1, 4, 3), _Abs(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 4)]),
}


class _Abs(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.abs(x)


def build(name: str, seed: int) -> nn.Sequential:
    """The network, each learnable layer made under ``manual_seed(seed + i)`` (featcli's seeding)."""
    layers = NETS[name][1]()
    i = 0
    for k, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d | nn.Linear):
            torch.manual_seed(seed + i)
            i += 1
            layers[k] = type(layer)(*_args(layer))
    return nn.Sequential(*layers)


def _args(layer: nn.Module) -> tuple[object, ...]:
    if isinstance(layer, nn.Conv2d):
        return (layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding)
    assert isinstance(layer, nn.Linear)
    return (layer.in_features, layer.out_features)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", choices=sorted(NETS))
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-split", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from featcli.train.data import digits, orientation  # the same images and labels
    from featcli.train.fit import split  # the same held-out images

    data = digits() if a.data == "digits" else orientation(seed=a.seed)
    tr, va = split(data.y, a.val_split, a.seed)
    x_tr, y_tr, x_va, y_va = data.x[tr], data.y[tr], data.x[va], data.y[va]
    net = build(a.data, a.seed)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(a.seed)
    torch.manual_seed(a.seed)
    t0 = time.perf_counter()
    acc = 0.0
    history = []
    for _ in range(a.epochs):
        net.train()
        order = torch.randperm(len(y_tr), generator=g)
        total, correct = 0.0, 0
        for b in range(0, len(order), a.batch_size):
            idx = order[b : b + a.batch_size]
            out = net(x_tr[idx])
            loss = loss_fn(out, y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)  # the epoch's training loss and accuracy, as featcli reports
            correct += int((out.argmax(1) == y_tr[idx]).sum())
        net.eval()
        with torch.inference_mode():
            acc = float((net(x_va).argmax(1) == y_va).float().mean())
        history.append((total / len(order), correct / len(order), acc))
    seconds = time.perf_counter() - t0
    print(json.dumps({"data": a.data, "stack": NETS[a.data][0], "val_acc": acc, "seconds": round(seconds, 4),
                      "train_loss": history[-1][0], "train_acc": history[-1][1]}))


if __name__ == "__main__":
    main()
