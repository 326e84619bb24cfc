"""``featcli cam``: each method's map against its formula written here with plain torch autograd on the same
network and layer, on every route (module:attr, featcli model file, .pt2, ONNX for Score-CAM)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from featcli.cli import app
from featcli.enums import CamMethod, Channels
from featcli.io.images import LoadOptions
from featcli.run.camnet import open_cam_network
from featcli.run.camrun import CamRequest, cam_image

NETS = str(Path(__file__).with_name("nets.py"))
GRADIENT = [CamMethod.GRADCAM, CamMethod.GRADCAM_PP, CamMethod.LAYERCAM]


def _image(path: Path, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path)
    return path


def _open(model: str, **kw: Any) -> Any:
    return open_cam_network(model, weights=kw.pop("weights", None), labels=kw.pop("labels", None),
                            device=torch.device("cpu"), max_bytes=None, load=LoadOptions(channels=Channels.RGB), **kw)


def _reference_a_g(module: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, cls: int | None
                   ) -> tuple[torch.Tensor, torch.Tensor, int, torch.Tensor]:
    """Plain autograd: the layer's output and the gradient of the class score at it (retain_grad)."""
    kept: dict[str, torch.Tensor] = {}

    def hook(_: Any, __: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        kept["a"] = out

    handle = layer.register_forward_hook(hook)
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = module(x)
    handle.remove()
    c = int(y[0].argmax()) if cls is None else cls
    y[0, c].backward()
    return kept["a"].detach(), kept["a"].grad.detach(), c, y.detach()  # type: ignore[union-attr]


def _formula(a: torch.Tensor, g: torch.Tensor, method: CamMethod) -> torch.Tensor:
    """The three gradient methods as their papers write them, one channel at a time."""
    a, g = a[0].double(), g[0].double()
    total = torch.zeros(a.shape[1:], dtype=torch.float64)
    for k in range(a.shape[0]):
        if method is CamMethod.GRADCAM:
            total += g[k].mean() * a[k]
        elif method is CamMethod.LAYERCAM:
            total += torch.clamp(g[k], min=0) * a[k]
        else:
            g2, g3 = g[k] ** 2, g[k] ** 3
            denom = 2 * g2 + a[k].sum() * g3
            alpha = torch.where(g[k] != 0, g2 / torch.where(denom != 0, denom, 1.0), 0.0)
            total += (alpha * torch.clamp(g[k], min=0)).sum() * a[k]
    return torch.clamp(total, min=0).float()


def _scorecam(module: Any, a: torch.Tensor, x: torch.Tensor, c: int) -> torch.Tensor:
    """Score-CAM's Algorithm 1, one masked input at a time."""
    s = []
    for k in range(a.shape[1]):
        m = F.interpolate(a[:, k:k + 1], size=x.shape[2:], mode="bilinear", align_corners=False)[0, 0]
        m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else torch.zeros_like(m)
        with torch.no_grad():
            s.append(float(module(x * m)[0, c]))
    w = torch.softmax(torch.tensor(s, dtype=torch.float64), 0)
    return torch.clamp((w[:, None, None] * a[0].double()).sum(0), min=0).float()


@pytest.mark.parametrize("method", GRADIENT, ids=str)
@pytest.mark.parametrize("cls", [None, "3"])
def test_gradient_methods_on_a_module_equal_their_formulas(tmp_path: Path, method: CamMethod,
                                                          cls: str | None) -> None:
    net = _open(f"{NETS}:tiny_resnet")
    img = _image(tmp_path / "a.png")
    res = cam_image(net, CamRequest((str(img),), "m", method=method, layer="block", cls=cls), str(img))
    _, x = net.prepare(str(img))
    a, g, c, _ = _reference_a_g(net.module, net.module.block, x, None if cls is None else int(cls))
    assert res.cls == c and res.layer.shape == (16, 8, 8)
    want = _formula(a, g, method)
    assert want.max() > 0
    torch.testing.assert_close(res.cam, want, atol=1e-5, rtol=0)


def test_scorecam_on_a_module_equals_algorithm_1(tmp_path: Path) -> None:
    net = _open(f"{NETS}:tiny_resnet")
    img = _image(tmp_path / "a.png")
    res = cam_image(net, CamRequest((str(img),), "m", method=CamMethod.SCORECAM, layer="block", cls="2"), str(img))
    _, x = net.prepare(str(img))
    a, _, _, _ = _reference_a_g(net.module, net.module.block, x, 2)
    torch.testing.assert_close(res.cam, _scorecam(net.module, a, x, 2), atol=1e-5, rtol=0)


def test_faithfulness_is_the_probability_on_the_masked_input(tmp_path: Path) -> None:
    net = _open(f"{NETS}:tiny_resnet")
    img = _image(tmp_path / "a.png")
    res = cam_image(net, CamRequest((str(img),), "m", layer="block", faithfulness=True), str(img))
    _, x = net.prepare(str(img))
    m = F.interpolate(res.cam[None, None], size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
    m = (m - m.min()) / (m.max() - m.min())
    with torch.no_grad():
        y, o = (torch.softmax(net.module(t).double(), 1)[0, res.cls] for t in (x, x * m))
    assert res.faith is not None
    assert res.faith.before == pytest.approx(float(y), abs=1e-6) and res.faith.after == pytest.approx(float(o),
                                                                                                        abs=1e-6)
    assert res.faith.drop == pytest.approx(max(0.0, float(y - o)) / float(y) * 100, abs=1e-4)
    assert res.faith.increase == bool(o > y)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A featcli model file (random weights, two classes) written as `featcli train` writes one."""
    from featcli.io.modelfile import ModelMeta, write_model
    from featcli.shape.code import module_code
    from featcli.shape.service import InputResolver, query

    stack = ("conv:out=4,k=3,p=1", "relu", "conv:out=6,k=3,p=1", "relu", "gap", "flatten", "linear:out=2")
    scope: dict[str, Any] = {}
    exec(compile(module_code(query(InputResolver(), "1x3x16x16", list(stack)), "t"), "<code>", "exec"), scope)  # noqa: S102
    torch.manual_seed(0)
    net = scope["Net"]().eval()
    p = tmp_path / "m.safetensors"
    write_model(p, net.state_dict(), ModelMeta(stack, ("cat", "dog"), (3, 16, 16), {"channels": "rgb"},
                                               {"epochs": 1}, "0.1.0"))
    return p


@pytest.mark.parametrize("method", [*GRADIENT, CamMethod.SCORECAM], ids=str)
def test_a_model_file_stage_equals_the_formula_on_its_code_net(model_file: Path, tmp_path: Path,
                                                               method: CamMethod) -> None:
    """The reference is the `featcli shape --code` Net loaded with the file's tensors; class by name."""
    from featcli.io.modelfile import read_model
    from featcli.shape.code import module_code
    from featcli.shape.service import InputResolver, query

    net = _open(str(model_file))
    assert [layer.name for layer in net.layers(None)][-2:] == ["4", "5"] and net.default_layer(None).name == "4"
    img = _image(tmp_path / "a.png", 16)
    res = cam_image(net, CamRequest((str(img),), "m", method=method, layer="3", cls="dog"), str(img))
    assert res.cls == 1 and res.label == "dog"
    scope: dict[str, Any] = {}
    stack = [s.text for s in net.opened.stack]
    exec(compile(module_code(query(InputResolver(), "1x3x16x16", stack), "t"), "<code>", "exec"), scope)  # noqa: S102
    ref = scope["Net"]().eval()
    ref.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in read_model(model_file).tensors().items()})
    _, x = net.prepare(str(img))
    a, g, _, _ = _reference_a_g(ref, ref.s3, x, 1)
    want = _scorecam(ref, a, x, 1) if method is CamMethod.SCORECAM else _formula(a, g, method)
    torch.testing.assert_close(res.cam, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_pt2_and_onnx_routes_equal_the_module(exported: dict[str, Path], nets: Any, tmp_path: Path,
                                               runner: Any) -> None:
    """.pt2: Grad-CAM at the block's last node; ONNX: Score-CAM at the same place (onnxruntime's numbers: 1e-4),
    and a gradient method refused in one line."""
    img = _image(tmp_path / "a.png")
    module = nets.tiny_resnet()
    pt2 = _open(str(exported["pt2"]))
    res = cam_image(pt2, CamRequest((str(img),), "m", layer="block.relu:relu_2"), str(img))
    _, x = pt2.prepare(str(img))
    a, g, c, _ = _reference_a_g(module, module.block, x, None)
    assert res.cls == c
    torch.testing.assert_close(res.cam, _formula(a, g, CamMethod.GRADCAM), atol=1e-5, rtol=0)
    onnx = _open(str(exported["onnx"]))
    res = cam_image(onnx, CamRequest((str(img),), "m", method=CamMethod.SCORECAM, layer="/block/relu_1/Relu",
                                     cls=str(c)), str(img))
    torch.testing.assert_close(res.cam, _scorecam(module, a, x, c), atol=1e-4, rtol=1e-4)
    out = runner.invoke(app, ["cam", str(img), "--model", str(exported["onnx"]), "-o", str(tmp_path / "o.png")])
    assert out.exit_code == 2 and "needs gradients, and an ONNX file has none" in out.output
    assert "Traceback" not in out.output and not (tmp_path / "o.png").exists()


def test_cli_overlay_save_and_records(tmp_path: Path, runner: Any) -> None:
    imgs = [_image(tmp_path / f"{n}.png", 40 + 8 * i, i) for i, n in enumerate(("a", "b"))]
    (tmp_path / "bad.png").write_bytes(b"not a png")
    labels = tmp_path / "names.txt"
    labels.write_text("\n".join(f"c{i}" for i in range(10)))
    out = runner.invoke(app, ["cam", str(tmp_path), "--model", f"{NETS}:tiny_resnet", "--labels", str(labels),
                              "--class", "c7", "--layer", "block", "-o", str(tmp_path / "{stem}_cam.png"),
                              "--save", str(tmp_path / "{stem}.npz"), "--jsonl"])
    assert out.exit_code == 1, out.output  # bad.png failed; the batch went on
    recs = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["status"] for r in recs] == ["ok", "ok", "failed"] and "bad.png" in recs[2]["error"]
    for rec, img in zip(recs, imgs, strict=False):
        assert rec["class"] == 7 and rec["label"] == "c7" and rec["layer"] == "block"
        side = Image.open(img).size[0]
        pic = Image.open(tmp_path / f"{img.stem}_cam.png")
        assert pic.info["featcli:overlay"] == f"{side}x{side}" and pic.info["featcli:class"] == "7"
        cam = np.load(tmp_path / f"{img.stem}.npz")["cam"]
        h = (side + 1) // 2 // 2 // 2  # stem conv s2, pool s2, block s2
        assert cam.shape == (h, h) and rec["map"] == [h, h]
        assert (rec["peak"]["y"], rec["peak"]["x"]) == np.unravel_index(cam.argmax(), cam.shape)
    assert not list(tmp_path.glob("bad*cam*"))


def test_usage_errors_are_one_line(model_file: Path, tmp_path: Path, runner: Any) -> None:
    img = _image(tmp_path / "a.png", 16)
    cases = [(["--class", "bird"], "not a class name; known: cat, dog"),
             (["--class", "5"], "the network has 2 classes"),
             (["--labels", str(img)], "--labels applies to networks that are no featcli model file"),
             (["--scale", "255"], "--scale applies to networks"),
             (["--layer", "9"], "--layer '9': no layer of that name"),
             (["-o", str(tmp_path / "x.jpg")], "expected a .png file")]
    for extra, message in cases:
        out = runner.invoke(app, ["cam", str(img), "--model", str(model_file), *extra])
        assert out.exit_code == 2 and message in out.output, (extra, out.output)
        assert "Traceback" not in out.output
    out = runner.invoke(app, ["cam", "--model", str(model_file), "--layers"])
    assert out.exit_code == 0 and "default" in out.stdout and "6 x 16x16" in out.stdout


def test_a_layer_changed_in_place_later_keeps_its_own_output(tmp_path: Path) -> None:
    """ResNet's ``out += identity`` after ``bn2``: A is bn2's output, and the gradient still reaches it."""
    net = _open(f"{NETS}:tiny_resnet")
    img = _image(tmp_path / "a.png")
    res = cam_image(net, CamRequest((str(img),), "m", layer="block.bn2", cls="1"), str(img))
    _, x = net.prepare(str(img))
    module = net.module
    kept: dict[str, torch.Tensor] = {}
    h = module.block.bn2.register_forward_hook(lambda _, __, out: kept.__setitem__("a", out.detach().clone()))
    with torch.no_grad():
        module(x)
    h.remove()
    a = kept["a"].requires_grad_(True)
    # the rest of the block and the head, from bn2's output on, in plain torch
    down = module.block.downsample(module.stem(x)).detach()
    y = torch.relu(a + down)
    y = torch.cat([module.left(y), module.right(y)], 1)
    score = module.fc(module.flatten(module.pool(y)))[0, 1]
    (g,) = torch.autograd.grad(score, a)
    torch.testing.assert_close(res.cam, _formula(a.detach(), g, CamMethod.GRADCAM), atol=1e-5, rtol=0)


def test_a_network_that_fails_is_one_line(tmp_path: Path, runner: Any) -> None:
    img = _image(tmp_path / "a.png", 64)
    out = runner.invoke(app, ["cam", str(img), "--model", f"{NETS}:WrongHead"])
    assert out.exit_code == 1 and out.output.count("featcli: error:") == 1 and "Traceback" not in out.output, out.output
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = runner.invoke(app, ["cam", str(bad), "--model", f"{NETS}:tiny_resnet"])
    assert out.exit_code == 1 and "bad.png" in out.output and "Traceback" not in out.output, out.output


def test_labels_must_name_every_class(tmp_path: Path, runner: Any) -> None:
    img = _image(tmp_path / "a.png", 32)
    labels = tmp_path / "names.txt"
    labels.write_text("a\nb\nc\n")
    out = runner.invoke(app, ["cam", str(img), "--model", f"{NETS}:tiny_resnet", "--labels", str(labels)])
    assert out.exit_code == 2 and "--labels names 3 classes but the network scores 10" in out.output, out.output
    out = runner.invoke(app, ["cam", str(img), "--model", f"{NETS}:tiny_resnet", "--layers", "--layer", "block"])
    assert out.exit_code == 2 and "--layer does not apply to --layers" in out.output, out.output


def test_a_layer_off_the_path_to_the_scores_is_one_line(tmp_path: Path) -> None:
    net_py = tmp_path / "side.py"
    net_py.write_text(
        "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n"
        "        self.side = nn.Conv2d(4, 2, 1)\n        self.fc = nn.Linear(4, 3)\n\n"
        "    def forward(self, x):\n        y = torch.relu(self.conv(x))\n        self.side(y)\n"
        "        return self.fc(y.mean((2, 3)))\n")
    net = _open(f"{net_py}:Net")
    img = _image(tmp_path / "a.png", 16)
    from featcli.errors import ModelError

    with pytest.raises(ModelError, match="the scores do not depend on layer 'side'"):
        cam_image(net, CamRequest((str(img),), "m", layer="side"), str(img))
    assert cam_image(net, CamRequest((str(img),), "m", layer="conv"), str(img)).cam.max() >= 0
