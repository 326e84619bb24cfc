"""The three routes against their references: torch forward hooks, onnxruntime, the exported program."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from featcli.models.layers import Recorder


def _hooked(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every leaf module's output by name, with plain torch forward hooks (a module called twice: name#2)."""
    seen: dict[str, torch.Tensor] = {}

    def hook(name: str):  # type: ignore[no-untyped-def]
        def fn(_m, _a, out):  # type: ignore[no-untyped-def]
            key = name if name not in seen else f"{name}#2"
            seen[key] = out.detach().clone()
        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n and not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def test_torch_route_maps_equal_forward_hooks(nets: ModuleType) -> None:
    from featcli.models.torch_route import run_module

    model, x = nets.tiny_resnet(), torch.rand(1, 3, 48, 56)
    rec = Recorder(["*"])
    out = run_module(model, x, rec)
    want = _hooked(model, x)
    assert set(want) <= set(rec.kept)
    for name, t in want.items():
        torch.testing.assert_close(rec.kept[name][0], t, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[0], model(x), atol=1e-5, rtol=0)
    block = next(r for r in rec.rows if r.name == "block")  # a container's row: after its residual add
    torch.testing.assert_close(rec.kept["block"][0], nets.tiny_resnet().block(model.stem(x)), atol=1e-5, rtol=0)
    assert block.type == "BasicBlock" and block.spec is None and block.ok is None


def test_only_selected_layers_keep_tensors_and_stats_are_exact(nets: ModuleType) -> None:
    from featcli.models.torch_route import run_module

    model, x = nets.tiny_resnet(), torch.rand(1, 3, 40, 40)
    rec = Recorder(["block.conv*"])
    run_module(model, x, rec)
    assert sorted(rec.kept) == ["block.conv1", "block.conv2"]
    relu = _hooked(model, x)["stem.1"]
    row = next(r for r in rec.rows if r.name == "stem.1")
    assert row.stats is not None and not row.kept
    assert row.stats.min == pytest.approx(float(relu.min())) and row.stats.max == pytest.approx(float(relu.max()))
    assert row.stats.mean == pytest.approx(float(relu.double().mean()), rel=1e-6)
    assert row.stats.zeros == pytest.approx(float((relu == 0).double().mean()))


def test_two_output_head(nets: ModuleType) -> None:
    from featcli.models.torch_route import run_module

    model, x = nets.PNet().eval(), torch.rand(1, 3, 24, 30)
    rec = Recorder(["conv4*", "softmax*"])
    boxes, probs = run_module(model, x, rec)
    want_boxes, want_probs = model(x)
    torch.testing.assert_close(boxes, want_boxes)
    torch.testing.assert_close(rec.kept["softmax4_1"][0], want_probs)
    assert boxes.shape == (1, 4, 9, 12) and all(r.ok for r in rec.rows)


def test_onnx_route_equals_onnxruntime_for_the_same_nodes(exported: dict[str, Path], tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    from featcli.models.onnx_route import load_onnx, run_onnx

    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    rec = Recorder(["*"])
    (out,) = run_onnx(load_onnx(str(exported["onnx"])), x, rec)
    full = ort.InferenceSession(str(exported["onnx"]), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(out, full.run(None, {"input": x})[0], atol=1e-5)
    proto = onnx.load(str(exported["onnx"]))
    names = {n.name: n.output[0] for n in proto.graph.node}
    for node in ("/block/Add", "/Concat", "/block/conv1/Conv", "/stem/stem.2/MaxPool"):
        sub = tmp_path / f"{node.replace('/', '_')}.onnx"  # the graph up to that node, run by onnxruntime alone
        onnx.utils.extract_model(str(exported["onnx"]), str(sub), ["input"], [names[node]])
        (want,) = ort.InferenceSession(str(sub), providers=["CPUExecutionProvider"]).run(None, {"input": x})
        np.testing.assert_allclose(rec.kept[node][0], want, atol=1e-5)
    checked = [r for r in rec.rows if r.spec]
    assert len(checked) >= 12 and all(r.ok for r in checked)
    assert {r.type for r in rec.rows if r.spec is None} == {"Add", "Concat"}


def test_onnx_dynamic_input_and_two_outputs(exported: dict[str, Path]) -> None:
    import onnxruntime as ort

    from featcli.models.onnx_route import load_onnx, run_onnx

    model = load_onnx(str(exported["pnet_onnx"]))
    assert model.dims == (1, 3, None, None)
    x = np.random.default_rng(1).random((1, 3, 31, 45), dtype=np.float32)
    got = run_onnx(model, x, Recorder())
    want = ort.InferenceSession(str(exported["pnet_onnx"]), providers=["CPUExecutionProvider"]).run(None, {"input": x})
    assert len(got) == 2
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-6)


def test_pt2_route_equals_the_exported_program(exported: dict[str, Path], nets: ModuleType) -> None:
    from featcli.models.export_route import load_pt2, run_pt2

    program = load_pt2(str(exported["pt2"]))
    assert program.dims == (1, 3, 64, 64)
    x = torch.rand(1, 3, 64, 64)
    rec = Recorder(["block.conv1:*", "cat"])
    (out,) = run_pt2(program, x, rec)
    torch.testing.assert_close(out, torch.export.load(str(exported["pt2"])).module()(x), atol=0, rtol=0)
    eager = nets.tiny_resnet()
    torch.testing.assert_close(out, eager(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(rec.kept["block.conv1:conv2d_1"][0], _hooked(eager, x)["block.conv1"], atol=1e-5,
                               rtol=0)
    assert rec.kept["cat"][0].shape == (1, 8, 8, 8)
    assert all(r.ok for r in rec.rows if r.spec) and {r.type for r in rec.rows if not r.spec} == {"add", "cat"}
