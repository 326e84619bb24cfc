"""`featcli shape ... --sizes LO-HI`: the accepted input sizes as a rule, checked against torch."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from featcli.cli import app
from featcli.errors import UsageError
from featcli.shape.sizes import parse_range, rule, valid_sizes
from featcli.stages.spec import parse_stage

MINI_UNET = ["conv:out=4,k=3,p=1", "save:a", "maxpool:k=2", "conv:out=4,k=3,p=1", "convt:out=4,k=2,s=2", "cat:a"]


def _torch_accepts(size: int) -> bool:
    conv1, conv2 = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(4, 4, 3, padding=1)
    up = torch.nn.ConvTranspose2d(4, 4, 2, stride=2)
    with torch.no_grad():
        a = conv1(torch.zeros(1, 1, size, size))
        try:
            torch.cat([up(conv2(torch.nn.functional.max_pool2d(a, 2))), a], dim=1)
        except RuntimeError:
            return False
    return True


def test_mini_unet_sizes_equal_torchs() -> None:
    report = valid_sizes([parse_stage(s, i) for i, s in enumerate(MINI_UNET, 1)], 1, 1, 4, 40)
    assert report.valid == tuple(s for s in range(4, 41) if _torch_accepts(s))
    assert report.rule == "multiples of 2 from 4"
    assert report.refused[0][0] == 5 and "cat:a" in report.refused[0][1]


def test_the_shipped_unet_wants_multiples_of_16(runner: CliRunner) -> None:
    res = runner.invoke(app, ["shape", "1x3x64x64", "@unet", "--sizes", "16-300"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("input sizes 16..300 (square, 1x3xSxS): multiples of 16 from 16 (18 of 285 pass)")
    doc = json.loads(runner.invoke(app, ["shape", "1x3x64x64", "@unet", "--sizes", "16-64", "--json"]).stdout)
    assert doc["valid"] == [16, 32, 48, 64] and doc["refused"][0]["size"] == 17


def test_rules_and_ranges() -> None:
    assert rule([5, 6, 7, 20, 21], 1, 30) == "5-7, 20-21"
    assert rule([9, 11, 13, 15], 1, 16) == "every 2nd size from 9"
    with pytest.raises(UsageError, match="LO-HI"):
        parse_range("40-20")
    res = CliRunner().invoke(app, ["shape", "1x3x8x8", "conv:k=9", "--sizes", "1-8"])
    assert res.exit_code == 1 and "none (0 of 8 pass)" in res.stdout
