"""`featcli shape --format markdown|csv|json` and the memory figures (--dtype), against torch's own tensors."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch
from typer.testing import CliRunner

from featcli.cli import app
from featcli.shape.memory import memory
from featcli.shape.service import InputResolver, query

STACK = ["conv:out=6,k=5,p=2", "relu", "maxpool:k=2", "conv:out=16,k=5", "relu", "maxpool:k=2", "flatten",
         "linear:out=10"]


def _torch_net() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(16 * 6 * 6, 10))


@pytest.mark.parametrize(("dtype", "torch_dtype"), [("float32", torch.float32), ("float16", torch.float16),
                                                   ("bfloat16", torch.bfloat16)])
def test_memory_equals_the_tensors_torch_makes(dtype: str, torch_dtype: torch.dtype) -> None:
    net = _torch_net().to(torch_dtype)
    x = torch.zeros(4, 3, 32, 32, dtype=torch_dtype)
    sizes = []
    for layer in net:
        x = layer(x)
        sizes.append(x.numel() * x.element_size())
    mem = memory(query(InputResolver(), "4x3x32x32", STACK), dtype)
    assert list(mem.stages) == sizes
    assert mem.input == 4 * 3 * 32 * 32 * torch.zeros((), dtype=torch_dtype).element_size()
    assert mem.activations == mem.input + sum(sizes)
    assert mem.params == sum(p.numel() * p.element_size() for p in net.parameters())
    # inference keeps one stage's input and output at a time: the largest such pair
    pairs = [a + b for a, b in zip([mem.input, *sizes], sizes, strict=False)]
    assert mem.peak == max(pairs)


def test_a_skip_keeps_its_saved_tensor_alive() -> None:
    mem = memory(query(InputResolver(), "1x8x32x32", "save:a maxpool:k=2 convt:out=8,k=2,s=2 cat:a".split()))
    # at the cat: the saved input (32 KiB), the upsampled branch (32 KiB) and the 16-channel result (64 KiB)
    assert mem.stages == (0, 8192, 32768, 65536) and mem.peak == 131072


def test_formats(runner: CliRunner) -> None:
    res = runner.invoke(app, ["shape", "1x3x32x32", *STACK, "--format", "markdown"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("| # | stage | output | params | MACs |") and lines[1].startswith("|---:|---|")
    assert "| `linear:out=10` | 1x10 | 5.77K |" in res.stdout and "memory (float32, the whole batch)" in res.stdout
    res = runner.invoke(app, ["shape", "1x3x32x32", *STACK, "--format", "csv", "--dtype", "float16"])
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows[-2]["stage"] == "linear:out=10" and rows[-2]["params"] == "5770"
    assert rows[-1]["stage"] == "total" and int(rows[-1]["memory_bytes_float16"]) > 0
    res = runner.invoke(app, ["shape", "1x3x32x32", *STACK, "--format", "json"])
    doc = json.loads(res.stdout)
    assert doc["memory"]["dtype"] == "float32" and doc["stages"][0]["bytes"] == 6 * 32 * 32 * 4
    res = runner.invoke(app, ["shape", "1x3x32x32", "relu", "--format", "yaml"])
    assert res.exit_code == 2 and "expected table, json, markdown or csv" in res.stderr
    res = runner.invoke(app, ["shape", "1x3x32x32", "relu", "--dtype", "int8"])
    assert res.exit_code == 2 and "--dtype 'int8'" in res.stderr
