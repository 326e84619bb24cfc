"""Upsampling, the smooth activations and the norms of current CNNs as stages on all three model routes: every
such layer gets a spec and the formula engine's shape equals the real one (a ✓ in the table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
import torch  # noqa: E402
from torch import nn  # noqa: E402

from featcli.models.formula import predict, spec_text  # noqa: E402
from featcli.models.layers import Recorder  # noqa: E402
from featcli.models.torch_route import module_op  # noqa: E402


class LayerNorm2d(nn.LayerNorm):
    """ConvNeXt's channels-first LayerNorm (torchvision's and timm's are written this way)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Modern(nn.Module):
    """A small network made of the layers this test is about (and a squeeze-excitation gate)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.gn = nn.GroupNorm(2, 4)
        self.gelu = nn.GELU(approximate="tanh")
        self.bil = nn.Upsample(scale_factor=1.5, mode="bilinear")
        self.ln = LayerNorm2d(4, eps=1e-6)
        self.silu = nn.SiLU()
        self.corners = nn.UpsamplingBilinear2d(size=(13, 11))
        self.hswish = nn.Hardswish()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.hsig = nn.Hardsigmoid()
        self.near = nn.Upsample(scale_factor=0.7, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.silu(self.ln(self.bil(self.gelu(self.gn(self.up(self.conv(x)))))))
        x = self.hswish(self.corners(x))
        return self.near(x * self.hsig(self.pool(x)))


EXPECTED = {"upsample", "groupnorm", "gelu", "layernorm", "silu", "hardswish", "hardsigmoid"}


def test_torch_route_predicts_every_layer() -> None:
    from featcli.models.torch_route import run_module

    rec = Recorder(["*"])
    run_module(Modern().eval(), torch.rand(1, 3, 9, 7), rec)
    rows = {r.name: r for r in rec.rows}
    assert {r.spec.split(":")[0] for r in rec.rows if r.spec} >= EXPECTED
    assert all(rows[n].spec and rows[n].ok for n in ("up", "gn", "gelu", "bil", "ln", "silu", "corners", "hswish",
                                                         "hsig", "near"))
    assert rows["corners"].spec == "upsample:o=13x11,mode=bilinear,ac=1"
    assert rows["ln"].spec == "layernorm:eps=1e-06" and rows["gelu"].spec == "gelu:approx=tanh"


@pytest.mark.parametrize(("layer", "shape"), [
    (nn.Upsample(scale_factor=(1.7, 0.45), mode="bilinear", recompute_scale_factor=True), (1, 2, 9, 13)),
    (nn.Upsample(scale_factor=1.1), (1, 2, 19, 23)),
    (nn.UpsamplingNearest2d(scale_factor=3), (1, 2, 4, 5)),
    (nn.Upsample(size=7, mode="bilinear", align_corners=False), (1, 2, 4, 5)),
    (nn.GroupNorm(3, 6, eps=1e-3), (2, 6, 4, 5)),
])
def test_prediction_equals_the_real_layer(layer: nn.Module, shape: tuple[int, ...]) -> None:
    op = module_op(layer, shape)
    assert op is not None
    with torch.no_grad():
        assert predict(spec_text(op), shape).shape == tuple(layer(torch.rand(shape)).shape), spec_text(op)


def test_layers_the_stages_do_not_equal_stay_unpredicted() -> None:
    assert module_op(nn.LayerNorm(5), (1, 3, 4, 5)) is None  # over W, not over the channels
    assert module_op(nn.GroupNorm(2, 4, affine=False), (1, 4, 3, 3)) is None  # no weights: not the stage
    assert module_op(nn.Upsample(scale_factor=2, mode="bicubic"), (1, 3, 4, 4)) is None


@pytest.mark.parametrize(("target", "args", "kwargs", "spec"), [
    ("upsample_nearest2d.vec", (None, [2.0, 2.0]), {}, "upsample:sf=2.0"),
    ("upsample_nearest2d.vec", ([10, 10], None), {}, "upsample:o=10"),
    ("upsample_nearest2d.default", ([11, 8], 1.7, 1.2), {}, "upsample:sf=1.7x1.2"),
    ("upsample_bilinear2d.vec", (None, False, [1.5, 0.5]), {}, "upsample:sf=1.5x0.5,mode=bilinear"),
    ("upsample_bilinear2d.vec", ([5, 7], True, None), {}, "upsample:o=5x7,mode=bilinear,ac=1"),
    ("gelu.default", (), {"approximate": "tanh"}, "gelu:approx=tanh"),
    ("hardsigmoid.default", (), {}, "hardsigmoid"),
    ("silu_.default", (), {}, "silu"),
    ("group_norm.default", (2, torch.ones(4), torch.zeros(4), 1e-3, False), {}, "groupnorm:g=2,eps=0.001"),
    ("native_group_norm.default", (torch.ones(4), torch.zeros(4), 1, 4, 42, 4, 1e-5), {}, "groupnorm:g=4"),
])
def test_aten_calls_as_stages(target: str, args: tuple[object, ...], kwargs: dict[str, object], spec: str) -> None:
    from featcli.models.export_route import aten_op

    packet, _, overload = target.partition(".")
    x = torch.rand(1, 4, 6, 7)
    op = aten_op(getattr(getattr(torch.ops.aten, packet), overload), (x, *args), kwargs)
    assert op is not None and spec_text(op) == spec
    assert predict(spec, x.shape).shape is not None


@pytest.mark.slow
def test_pt2_route_predicts_every_layer(tmp_path: Path) -> None:
    from featcli.models.export_route import load_pt2, run_pt2

    path = tmp_path / "modern.pt2"
    torch.export.save(torch.export.export(Modern().eval(), (torch.rand(1, 3, 9, 7),)), str(path))
    rec = Recorder(["*"])
    run_pt2(load_pt2(str(path)), torch.rand(1, 3, 9, 7), rec)
    specs = [r.spec for r in rec.rows if r.spec]
    assert {s.split(":")[0] for s in specs} >= EXPECTED - {"layernorm"}  # aten's layer_norm is channels-last
    assert all(r.ok for r in rec.rows if r.spec)
    assert "upsample:sf=1.5,mode=bilinear" in specs and "upsample:o=13x11,mode=bilinear,ac=1" in specs


@pytest.mark.slow
def test_onnx_route_predicts_resize_and_the_activations(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from featcli.models.onnx_route import load_onnx, run_onnx

    path = tmp_path / "modern.onnx"
    torch.onnx.export(Modern().eval(), (torch.rand(1, 3, 9, 7),), str(path), dynamo=False, input_names=["input"],
                      opset_version=17)
    rec = Recorder(["*"])
    run_onnx(load_onnx(str(path)), np.random.default_rng(0).random((1, 3, 9, 7), dtype=np.float32), rec)
    specs = [r.spec for r in rec.rows if r.spec]
    assert {s.split(":")[0] for s in specs} >= {"upsample", "hardswish", "hardsigmoid", "sigmoid"}
    assert all(r.ok for r in rec.rows if r.spec)
    rows = {r.name: r.spec for r in rec.rows}
    # scales from Constant nodes, as ONNX stores them (float32); sizes computed by the graph (Shape, Concat): "-"
    assert (rows["/up/Resize"], rows["/bil/Resize"], rows["/near/Resize"], rows["/corners/Resize"]) == (
        "upsample:sf=2.0", "upsample:sf=1.5,mode=bilinear", "upsample:sf=0.699999988079071", None)


def test_onnx_nodes_as_stages() -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    from featcli.models.onnx_route import node_op, small_constants

    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["sc"], value=numpy_helper.from_array(np.array([1, 1, 2, 3], np.float32))),
         helper.make_node("Resize", ["x", "", "sc"], ["a"], mode="linear", coordinate_transformation_mode="half_pixel"),
         helper.make_node("Resize", ["x", "", "", "sz"], ["b"], mode="nearest", nearest_mode="floor",
                          coordinate_transformation_mode="asymmetric"),
         helper.make_node("Resize", ["x", "", "sc"], ["c"], mode="nearest"),  # round_prefer_floor: not torch's
         helper.make_node("HardSigmoid", ["x"], ["d"], alpha=1 / 6),
         helper.make_node("HardSigmoid", ["x"], ["e"]),  # ONNX's default alpha 0.2: not torch's
         helper.make_node("GroupNormalization", ["x", "g", "g"], ["f"], num_groups=2, epsilon=1e-3)],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 5, 6])], [],
        [numpy_helper.from_array(np.array([1, 4, 7, 9], np.int64), "sz"),
         numpy_helper.from_array(np.ones(4, np.float32), "g")])
    shapes, inits = {"x": (1, 4, 5, 6)}, {"sz": (4,), "g": (4,)}
    ops = [node_op(n, shapes, inits, small_constants(graph)) for n in graph.node[1:]]
    specs = [spec_text(op) if op else None for op in ops]
    assert specs == ["upsample:sf=2.0x3.0,mode=bilinear", "upsample:o=7x9", None, "hardsigmoid", None,
                     "groupnorm:g=2,eps=0.001"]
    assert predict(specs[0], (1, 4, 5, 6)).shape == (1, 4, 10, 18)


def test_a_damaged_constant_has_no_value() -> None:
    onnx = pytest.importorskip("onnx")
    from featcli.models.onnx_route import small_constants

    bad = onnx.TensorProto(name="bad", dims=[4], data_type=onnx.TensorProto.FLOAT, raw_data=b"abc")
    assert small_constants(onnx.helper.make_graph([], "g", [], [], [bad])) == {}
