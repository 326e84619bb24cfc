"""A network layer's receptive field (:func:`featcli.shape.field.network_field` over the rows' ``sources``)
equals the exact one autograd finds: with every weight positive, the support of ``d out[0, c, y, x] / d input``
is the box clipped to the image. On the module route, the ONNX export and the ``.pt2`` export of each net."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from featcli.models.layers import Recorder  # noqa: E402
from featcli.shape.field import Field, field_of, network_field  # noqa: E402
from featcli.shape.infer import infer  # noqa: E402
from featcli.stages.spec import parse_stages  # noqa: E402

SIZE = 24


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """One torch thread: tiny convs on a shared machine's busy cores are a hundred times slower on two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Block(nn.Module):
    """ResNet's basic block: identity shortcut, or a 1x1 stride-2 downsample on it (``stride=2``)."""

    def __init__(self, c: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.down = nn.Sequential(nn.Conv2d(c, c, 1, 2, bias=False), nn.BatchNorm2d(c)) if stride == 2 else None

    def forward(self, x: Any) -> Any:
        identity = x if self.down is None else self.down(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += identity
        return self.relu(out)


class Net(nn.Module):
    """A stem conv, then ``block``, so the shortcut does not start at the image itself."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.stem, self.block = nn.Conv2d(3, 3, 3, padding=1), block

    def forward(self, x: Any) -> Any:
        return self.block(self.stem(x))


class TwoBranches(nn.Module):
    """``conv_a(x) + conv_b(x)`` of equal shapes: a chain of the two in execution order passes every shape check."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 5, padding=2)

    def forward(self, x: Any) -> Any:
        return self.a(x) + self.b(x)


class Cat(nn.Module):
    """Two branches concatenated along the channels, then (``mix``) a conv over all of them."""

    def __init__(self, mix: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 2, 5, stride=1, padding=2)
        self.mix = nn.Conv2d(4, 3, 3, padding=1) if mix else None

    def forward(self, x: Any) -> Any:
        y = torch.relu(torch.cat([self.a(x), self.b(x)], 1))
        return self.mix(y) if self.mix is not None else y


def _positive(model: nn.Module) -> nn.Module:
    """Every weight ``1/numel``, every bias 0 (BatchNorm keeps its identity statistics): all paths add up."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0 / m.weight.numel())
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model.eval()


def _rows(model: nn.Module, route: str, tmp_path: Path) -> list[Any]:
    x = torch.rand(1, 3, SIZE, SIZE) + 0.5
    rec = Recorder()
    if route == "module":
        from featcli.models.torch_route import run_module

        run_module(model, x, rec)
    elif route == "onnx":
        from featcli.models.onnx_route import load_onnx, run_onnx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(tmp_path / "m.onnx"), dynamo=False)
        run_onnx(load_onnx(str(tmp_path / "m.onnx")), x, rec)
    else:
        from featcli.models.export_route import load_pt2, run_pt2

        torch.export.save(torch.export.export(model, (x,)), str(tmp_path / "m.pt2"))
        run_pt2(load_pt2(str(tmp_path / "m.pt2")), x, rec)
    return rec.rows


def _support(model: nn.Module, c: int, y: int, x: int) -> tuple[int, int, int, int]:
    """The bounding box of the input pixels output ``(c, y, x)`` depends on (autograd, all weights positive)."""
    img = (torch.rand(1, 3, SIZE, SIZE) + 0.5).requires_grad_(True)
    model(img)[0, c, y, x].backward()
    ys, xs = np.nonzero(img.grad[0].abs().sum(0).numpy())
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _check(model: nn.Module, field: Field | None, channels: int = 1) -> None:
    """``field``'s boxes, clipped to the image, are the supports autograd finds (corners, edges, middle)."""
    assert field is not None
    with torch.no_grad():
        h, w = model(torch.zeros(1, 3, SIZE, SIZE)).shape[2:]
    for c in range(channels):
        for y in sorted({0, 1, h // 2, h - 1}):
            for x in sorted({0, 1, w // 2, w - 1}):
                top, left, bottom, right = field.box(y, x)
                assert _support(model, c, y, x) == (max(top, 0), max(left, 0), min(bottom, SIZE), min(right, SIZE))


ROUTES = ["module", "onnx", pytest.param("pt2", marks=pytest.mark.slow)]

CASES: dict[str, Any] = {
    "identity": lambda: Net(Block(3, 1)),
    "downsample": lambda: Net(Block(3, 2)),
    "two-branches": TwoBranches,
    "cat-conv": lambda: Cat(True),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_output_field_is_the_support_of_the_gradient(case: str, route: str, tmp_path: Path) -> None:
    model = _positive(CASES[case]())
    rows = _rows(model, route, tmp_path)
    last = max(r.index for r in rows if r.shapes and len(r.shapes[0]) == 4)
    _check(model, network_field(rows, last))


@pytest.mark.parametrize("route", ROUTES)
def test_a_cat_and_its_per_channel_layers_have_no_box(route: str, tmp_path: Path) -> None:
    model = _positive(Cat(False))
    rows = _rows(model, route, tmp_path)
    cat = next(r.index for r in rows if r.type in ("cat", "Concat"))
    assert [network_field(rows, r.index) for r in rows if r.index >= cat] == [None] * (len(rows) - cat + 1)
    assert network_field(rows, 1) == Field((-1, -1), (1, 1), (3, 3))  # a branch before the cat has its box
    assert _support(model, 0, 5, 5) != _support(model, 3, 5, 5)  # channels of the cat see different boxes


def test_two_equal_branches_are_no_chain() -> None:
    """The old chain check took ``a`` then ``b`` as a stack: a box of 7x7, where the field is 5x5."""
    model = _positive(TwoBranches())
    rows = _rows(model, "module", Path())
    chain = infer((1, 3, SIZE, SIZE), parse_stages([r.spec for r in rows[:2]]))
    old = field_of(chain, 2, 8, 8)
    new = network_field(rows, 3)
    assert new is not None and rows[2].sources == (1, 2)
    assert old != new.box(8, 8) == _support(model, 0, 8, 8) == (6, 6, 11, 11)


@pytest.mark.parametrize("route", ROUTES)
def test_rows_read_their_sources(route: str, tmp_path: Path) -> None:
    """The image is source 0, weights are none, the shortcut's add reads the main path and the downsample."""
    rows = _rows(_positive(Net(Block(3, 2))), route, tmp_path)
    convs = [r for r in rows if r.type in ("Conv2d", "Conv", "conv2d")]

    def conv(part: str) -> Any:
        (row,) = [r for r in convs if re.search(rf"(^|[./]){part}([./:]|$)", r.name)]
        return row

    stem, conv1, conv2, down = conv("stem"), conv("conv1"), conv("conv2"), conv("down")
    add = next(r for r in rows if r.type in ("add", "add_", "Add"))
    assert stem.sources == (0,) and down.sources == (stem.index,)
    assert conv1.sources is not None and len(conv1.sources) == 1 and conv1.sources[0] >= stem.index
    main = max(r.index for r in rows if r.index < add.index and ("conv2" in r.name or "bn2" in r.name))
    shortcut = max(r.index for r in rows if r.index < add.index and "down" in r.name)
    assert add.sources == (main, shortcut) and main >= conv2.index and shortcut >= down.index  # out += identity


class Normalized(nn.Module):
    """``(x - mean) / std`` with buffers, then three branches concatenated and mixed by a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.25))
        self.register_buffer("std", torch.full((1, 3, 1, 1), 2.0))
        self.a, self.b = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 2, 5, padding=2)
        self.c = nn.Conv2d(3, 2, 1)
        self.mix = nn.Conv2d(6, 3, 1)

    def forward(self, x: Any) -> Any:
        x = (x - self.mean) / self.std
        return self.mix(torch.cat([self.a(x), self.b(x), self.c(x)], 1))


@pytest.mark.parametrize("route", ["module", "onnx"])
def test_constants_keep_positions_and_a_cat_of_three_is_a_union(route: str, tmp_path: Path) -> None:
    model = _positive(Normalized())
    rows = _rows(model, route, tmp_path)
    field = network_field(rows, rows[-1].index)
    assert field == Field((-2, -2), (1, 1), (5, 5))
    _check(model, field)


class Gated(nn.Module):
    """A squeeze-and-excitation gate (a 1x1 map broadcast over the positions), or a depthwise conv after a cat."""

    def __init__(self, depthwise: bool) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 2, 1)
        self.depthwise = nn.Conv2d(4, 4, 3, padding=1, groups=4) if depthwise else None

    def forward(self, x: Any) -> Any:
        y = self.a(x)
        if self.depthwise is not None:
            return self.depthwise(torch.cat([y, self.b(x)], 1))
        return y * torch.sigmoid(torch.nn.functional.adaptive_avg_pool2d(y, 1))


@pytest.mark.parametrize("depthwise", [False, True])
def test_a_gate_and_a_depthwise_conv_after_a_cat_have_no_box(depthwise: bool) -> None:
    rows = _rows(_positive(Gated(depthwise)), "module", Path())
    assert network_field(rows, 1) is not None and network_field(rows, rows[-1].index) is None


def _set(y: Any) -> Any:
    y[:, :, :4] = 0
    return y


#: What :class:`Between` does to the first conv's output: write it in place (a call that is no row, or through a
#: part of it), alias it (a copy, the same values) or move its positions (a transposed view).
BETWEEN: dict[str, Any] = {"setitem": _set, "part": lambda y: (y[:, :2].zero_(), y)[1], "detach": lambda y: y.detach(),
                           "contiguous": lambda y: y.contiguous().float(), "data": lambda y: y.data,
                           "transposed": lambda y: y.mT}


class Between(nn.Module):
    """Two convs, the second reading the first's output after ``BETWEEN[how]``."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a, self.b = nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: Any) -> Any:
        return self.b(BETWEEN[self.how](self.a(x)))


@pytest.mark.parametrize(("how", "sources"), [("detach", (1,)), ("contiguous", (1,)), ("data", (1,)),
                                              ("transposed", None)])
def test_an_alias_is_its_row_and_a_moved_view_is_unknown(how: str, sources: Any) -> None:
    rows = _rows(_positive(Between(how)), "module", Path())
    assert rows[-1].name == "b" and rows[-1].sources == sources
    assert (network_field(rows, rows[-1].index) == Field((-2, -2), (1, 1), (5, 5))) == (sources is not None)


@pytest.mark.parametrize("how", ["setitem", "part"])
def test_unknown_sources_place_nothing(how: str) -> None:
    """A tensor changed in place by a call that is no row, or through a view, is unknown to the rows after it."""
    rows = _rows(_positive(Between(how)), "module", Path())
    assert rows[0].sources == (0,) and rows[-1].name == "b" and rows[-1].sources is None
    assert network_field(rows, rows[-1].index) is None


@pytest.mark.slow
def test_resnet50_fields_are_the_support_of_the_gradient() -> None:
    """ResNet-50 (``benchmarks/archs``): its known receptive field (427), and the boxes of layer2's and layer3's
    blocks equal autograd's supports, in float64 (in float32 the far paths' products of small weights
    underflow to 0). The reference swaps the stem's max pool for an average pool of the same window: a max
    pool's gradient reaches its argmax only, a smaller set than the window the value depends on."""
    from benchmarks.archs.resnet import resnet50

    model = resnet50().eval()
    model.maxpool = nn.AvgPool2d(3, 2, 1)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.constant_(m.weight, 1.0 / m.weight.numel())
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.running_mean.zero_()
            m.running_var.fill_(1)
    size = 160
    rec = Recorder()
    from featcli.models.torch_route import run_module

    run_module(model, torch.rand(1, 3, size, size), rec)
    last = [r for r in rec.rows if r.name.startswith("layer4.2.relu")][-1]
    assert network_field(rec.rows, last.index, (1, 3, size, size)) == Field((-213, -213), (32, 32), (427, 427))
    model = model.double()
    got: dict[str, Any] = {}
    for block in ("layer2.3", "layer3.1"):
        row = [r for r in rec.rows if r.name.startswith(block + ".relu")][-1]
        field = network_field(rec.rows, row.index, (1, 3, size, size))
        assert field is not None
        hook = model.get_submodule(block).register_forward_hook(lambda m, a, out: got.__setitem__("out", out))
        h = row.shapes[0][2]
        for y, x in ((0, 0), (h // 2, h // 2), (h - 1, 3)):
            img = (torch.rand(1, 3, size, size, dtype=torch.float64) + 0.5).requires_grad_(True)
            model(img)
            got["out"][0, 0, y, x].backward()
            ys, xs = np.nonzero(img.grad[0].abs().sum(0).numpy())
            top, left, bottom, right = field.box(y, x)
            assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == \
                (max(top, 0), max(left, 0), min(bottom, size), min(right, size))
        hook.remove()
