"""The module route's functional rows (``x + y``, ``torch.cat``, ``F.relu``... between modules) and a failing
network's table up to the failed layer, on the module and ``.pt2`` routes."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from featcli.cli import app
from featcli.models.layers import LayerFailure, Recorder

NETS = str(Path(__file__).with_name("nets.py"))


def _run(model: torch.nn.Module, x: torch.Tensor, globs: tuple[str, ...] = ("*",)) -> Recorder:
    from featcli.models.torch_route import run_module

    rec = Recorder(globs)
    run_module(model, x, rec)
    return rec


def test_functional_rows_equal_the_same_calls_in_plain_torch(nets: ModuleType) -> None:
    torch.manual_seed(0)
    model, x = nets.Functional().eval(), torch.rand(1, 3, 8, 8)
    rec = _run(model, x)
    assert [r.name for r in rec.rows] == ["conv", "bn", "add", "relu", "conv#2", "act", "abs", "cat", "max_pool2d",
                                          "view", "flatten", "getitem", "linear"]
    with torch.no_grad():  # the forward, step by step
        add = model.bn(model.conv(x)) + x
        relu = F.relu(add)
        act = model.act(model.conv(relu))
        cat = torch.cat([act, x.abs()], 1)
        pool = F.max_pool2d(cat, 2, 2)
        view = pool.view(1, 6, -1)
        flat = view.flatten(1)
        want = {"add": add, "relu": relu, "abs": x.abs(), "cat": cat, "max_pool2d": pool, "view": view,
                "flatten": flat, "getitem": flat[:, :24], "linear": F.linear(flat[:, :24], model.weight)}
    for name, t in want.items():
        torch.testing.assert_close(rec.kept[name][0], t, atol=0, rtol=0)
    rows = {r.name: r for r in rec.rows}
    assert rows["add"].stats is not None and rows["add"].stats.max == pytest.approx(float(add.max()))
    assert rows["relu"].spec == "relu" and rows["relu"].ok  # a stage where the stage language has one
    assert rows["max_pool2d"].spec == "maxpool:k=2" and rows["max_pool2d"].ok  # keywords bound by name
    assert rows["linear"].spec == "linear:out=5,bias=0" and rows["linear"].params == 120
    # two tensors meet as a stack's branches do: the second operand is the saved tensor b
    assert rows["add"].spec == "add:b" and rows["add"].ok and rows["cat"].spec == "cat:b" and rows["cat"].ok
    assert rows["view"].spec is None


def test_no_double_rows_inside_leaf_modules_and_no_aliases(nets: ModuleType) -> None:
    """A Conv2d's own F.conv2d, a BatchNorm's F.batch_norm are not rows again; contiguous is no row; the
    residual add inside a block is named by the block's path, before the block's own row."""
    rec = _run(nets.tiny_resnet(), torch.rand(1, 3, 40, 40))
    names = [r.name for r in rec.rows]
    assert not {r.type for r in rec.rows} & {"conv2d", "batch_norm", "linear", "contiguous"}
    assert names.index("block.bn2") < names.index("block.add") < names.index("block.relu#2") < names.index("block")
    # the block returns its last row's tensor: a row again only when --layers selects it
    assert "block" not in [r.name for r in _run(nets.tiny_resnet(), torch.rand(1, 3, 40, 40), ("stem*",)).rows]
    assert "cat" in names and len(names) == len(set(names))
    rec = _run(nets.Functional().eval(), torch.rand(1, 3, 8, 8))
    assert "contiguous" not in {r.type for r in rec.rows}


def test_a_forward_that_fails_under_the_function_mode_runs_on_hooks(nets: ModuleType) -> None:
    from featcli.models.torch_route import run_module

    model, x, memo = nets.NoModes().eval(), torch.rand(1, 3, 8, 8), {}
    rec = Recorder(["*"])
    (out,) = run_module(model, x, rec, memo)
    torch.testing.assert_close(out, torch.relu(model.conv(x)))
    assert [r.name for r in rec.rows] == ["conv"]
    assert rec.notes == ["modules only: the forward fails while its functional calls are recorded "
                         "(RuntimeError: no torch function modes here)"]
    again = Recorder()
    run_module(model, x, again, memo)  # the run's next image: hooks at once
    assert [r.name for r in again.rows] == ["conv"] and again.notes == rec.notes


def test_module_failure_ends_the_table_at_the_failed_layer(nets: ModuleType) -> None:
    rec = Recorder()
    with pytest.raises(LayerFailure) as info:
        _run_into(nets.WrongHead().eval(), torch.rand(1, 3, 16, 16), rec)
    assert str(info.value).startswith("layer fc (Linear): linear:out=10 takes 128 input features, got 512: "
                                      "the input size differs from the one the network was built for; RuntimeError: ")
    assert [r.name for r in rec.rows] == ["conv", "relu", "flatten", "fc"]
    fc = rec.rows[-1]
    assert fc.error is not None and fc.shapes == () and fc.ok is False and fc.record()["error"] == fc.error


def _run_into(model: torch.nn.Module, x: torch.Tensor, rec: Recorder) -> None:
    from featcli.models.torch_route import run_module

    run_module(model, x, rec)


def test_a_functional_call_that_fails_is_the_failed_row() -> None:
    class Mismatch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x) + x

    rec = Recorder()
    with pytest.raises(LayerFailure, match=r"^layer add \(add\): RuntimeError: The size of tensor a \(8\)"):
        _run_into(Mismatch().eval(), torch.rand(1, 3, 8, 8), rec)
    assert [(r.name, r.error is not None) for r in rec.rows] == [("conv", False), ("add", True)]


def test_pt2_failure_names_the_node_and_the_channels_it_was_built_for(exported: dict[str, Path]) -> None:
    from featcli.models.export_route import load_pt2, run_pt2

    rec = Recorder()
    with pytest.raises(LayerFailure, match=r"^layer stem.0:conv2d \(conv2d\): conv:out=8,k=7,s=2,p=3 takes 3 input "
                                           r"channels, got 1: the input size differs .*; RuntimeError: "):
        run_pt2(load_pt2(str(exported["pt2"])), torch.rand(1, 1, 64, 64), rec)
    assert [(r.name, r.ok) for r in rec.rows] == [("stem.0:conv2d", False)] and rec.rows[0].error


@pytest.mark.slow  # torch.export: 2-6 s
def test_pt2_failure_ends_the_table_at_the_failed_node(tmp_path: Path, nets: ModuleType) -> None:
    from featcli.models.export_route import load_pt2, run_pt2

    path = tmp_path / "head.pt2"
    torch.export.save(torch.export.export(nets.WrongHead().eval(), (torch.rand(1, 3, 8, 8),)), str(path))
    rec = Recorder()
    with pytest.raises(LayerFailure) as info:
        run_pt2(load_pt2(str(path)), torch.rand(1, 3, 16, 16), rec)  # featcli resizes; a caller may not
    assert str(info.value).startswith("layer fc:linear (linear): linear:out=10 takes 128 input features, got 512")
    assert [r.type for r in rec.rows] == ["conv2d", "relu", "flatten", "linear"] and rec.rows[-1].ok is False


def test_cli_prints_the_table_up_to_the_failure_and_a_batch_goes_on(runner: CliRunner, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "150")
    res = runner.invoke(app, ["run", "sample:shapes", "--model", f"{NETS}:WrongHead", "--size", "16x16"])
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert lines[-1].startswith("featcli: error: sample:shapes: layer fc (Linear): linear:out=10 takes 128 input")
    row = next(line for line in lines if line.split()[:2] == ["4", "fc"])
    assert "✗ failed" in row and "Traceback" not in res.output
    res = runner.invoke(app, ["run", "sample:shapes", "sample:photo", "--model", f"{NETS}:WrongHead", "--size",
                              "16x16", "--jsonl", "-q"])
    assert res.exit_code == 1
    records = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    assert [r["status"] for r in records] == ["failed", "failed"]
    assert all("layer fc (Linear)" in r["error"] for r in records)


def test_kept_maps_are_the_values_then_not_after_later_in_place_calls() -> None:
    """torchvision's block: ``out += identity`` then ``ReLU(inplace=True)`` rewrite the tensors kept before."""

    class InPlace(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = torch.nn.BatchNorm2d(3)
            self.relu = torch.nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn(x)
            out += x
            return self.relu(out)

    model, x = InPlace().eval(), torch.randn(1, 3, 6, 6)
    rec = _run(model, x)
    assert [r.name for r in rec.rows] == ["bn", "add", "relu"]
    with torch.no_grad():
        bn = model.bn(x)
    torch.testing.assert_close(rec.kept["bn"][0], bn, atol=0, rtol=0)
    torch.testing.assert_close(rec.kept["add"][0], bn + x, atol=0, rtol=0)
    assert rec.rows[1].stats is not None and rec.rows[1].stats.min < 0  # measured before the relu


def test_the_budget_weighs_a_cat_before_it_is_made() -> None:
    from featcli.errors import BudgetError

    class Twice(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, x], 1) * 2

    rec = Recorder(budget=1500)  # the input, 1x4x8x8 float32, is 1 KiB; the cat 2 KiB
    with pytest.raises(BudgetError, match=r"^layer 'cat': output 1x8x8x8 float32 needs 2.0 KiB"):
        _run_into(Twice(), torch.rand(1, 4, 8, 8), rec)
    assert rec.rows == []
