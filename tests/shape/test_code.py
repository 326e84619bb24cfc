"""`featcli shape --code`: the printed nn.Module runs in torch and gives every stage's shape and the params."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from featcli.cli import app
from featcli.shape.service import InputResolver, query

CASES = [
    ("1x3x224x224", ["@resnet18"]),
    ("1x3x224x224", ["@vgg11"]),
    ("1x1x32x32", ["@lenet5"]),
    ("1x3x64x64", ["@unet"]),
    ("1x8x16x16", ["save:a", "conv:out=8,k=3,p=1", "add:a(conv:out=8,k=1 bn)", "cat:a",
                   "conv:w=sobel_x+sobel_y,p=same", "magnitude"]),
    ("2x3x17x19", ["conv:out=4,k=4,p=same,pm=reflect", "convt:out=4,k=3,s=2,p=1,op=1", "maxpool:k=3,s=2,p=1,ceil=1",
                   "avgpool:k=2,cip=0", "adaptiveavg:o=3", "leakyrelu:slope=0.2", "prelu", "sigmoid", "tanh",
                   "softmax", "abs", "bn", "dropout:p=0.1", "adaptivemax:o=2", "gap", "flatten", "linear:out=5"]),
]


@pytest.mark.parametrize(("shape", "stages"), CASES, ids=[" ".join(s)[:30] for _, s in CASES])
def test_code_runs_with_every_shape(runner: CliRunner, shape: str, stages: list[str]) -> None:
    res = runner.invoke(app, ["shape", shape, *stages, "--code"])
    assert res.exit_code == 0, res.output
    scope: dict[str, object] = {}
    exec(compile(res.stdout, "<featcli --code>", "exec"), scope)  # noqa: S102 - the code under test
    net = scope["Net"]().to("meta")  # type: ignore[operator]
    report = query(InputResolver(), shape, stages)
    seen: dict[int, tuple[int, ...]] = {}
    for name, module in net.named_children():
        module.register_forward_hook(lambda m, i, o, k=int(name[1:]): seen.__setitem__(k, tuple(o.shape)))
    out = net(torch.zeros(report.input, device="meta"))
    assert tuple(out.shape) == report.output
    assert sum(p.numel() for p in net.parameters()) == report.params
    rows = {r.index: r.out_shape for r in report.stages}
    assert seen and all(seen[k] == rows[k] for k in seen), {k: (seen[k], rows[k]) for k in seen if seen[k] != rows[k]}
