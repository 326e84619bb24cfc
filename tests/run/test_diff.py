"""``featcli diff``: the figures against NumPy, the matching, and a weight changed in one layer found at that
layer for every pair of routes (module, ONNX, ``.pt2``, two weight files, two stacks)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.run.diffcompare import compare, param_diff
from featcli.run.diffmatch import key_of, match

NET = '''import torch
from collections import OrderedDict
from torch import nn


def Net():
    return nn.Sequential(OrderedDict([("c1", nn.Conv2d(3, 4, 3)), ("r1", nn.ReLU()), ("c2", nn.Conv2d(4, 4, 3)),
                                      ("gap", nn.AdaptiveAvgPool2d(1)), ("fl", nn.Flatten()), ("fc", nn.Linear(4, 3))]))
'''
#: the changed layer: ``c2``, row 3 in every route (c1, r1, c2, ...)
CHANGED = 3


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, ["diff", *args])


def _module(d: Path) -> Any:
    """The tiny module's file in ``d``, imported."""
    import sys

    (d / "tinynet.py").write_text(NET)
    sys.path.insert(0, str(d))
    try:
        import tinynet
    finally:
        sys.path.remove(str(d))
    return tinynet


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The tiny module's file, its weights and a copy with one weight of ``c2`` changed, and a 32x32 image."""
    import torch

    d = tmp_path_factory.mktemp("weights")
    (d / "tinynet.py").write_text(NET)
    torch.manual_seed(0)
    m = _module(d).Net().eval()
    torch.save(m.state_dict(), d / "ok.pt")
    with torch.no_grad():
        m.c2.weight[1, 2, 0, 1] += 0.25
    torch.save(m.state_dict(), d / "bad.pt")
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "img.png")
    return {"module": f"{d / 'tinynet.py'}:Net", "ok.pt": str(d / "ok.pt"), "bad.pt": str(d / "bad.pt"),
            "img": str(d / "img.png")}


@pytest.fixture(scope="module")
def nets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny module, its weights and a copy with one weight of ``c2`` changed, each exported to ONNX and .pt2;
    and a 32x32 image."""
    import torch

    d = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    m = _module(d).Net().eval()
    x = torch.zeros(1, 3, 32, 32)
    out: dict[str, str] = {"module": f"{d / 'tinynet.py'}:Net"}
    for tag in ("ok", "bad"):
        if tag == "bad":
            with torch.no_grad():
                m.c2.weight[1, 2, 0, 1] += 0.25
        torch.save(m.state_dict(), d / f"{tag}.pt")
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation
            warnings.simplefilter("ignore")
            torch.onnx.export(m, (x,), str(d / f"{tag}.onnx"), dynamo=False, input_names=["image"])
        torch.export.save(torch.export.export(m, (x,)), str(d / f"{tag}.pt2"))
        out.update({f"{tag}.pt": str(d / f"{tag}.pt"), f"{tag}.onnx": str(d / f"{tag}.onnx"),
                    f"{tag}.pt2": str(d / f"{tag}.pt2")})
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / "img.png")
    out["img"] = str(d / "img.png")
    return out


# --- the figures -----------------------------------------------------------------------------------------------
def test_figures_equal_numpy() -> None:
    rng = np.random.default_rng(0)
    b = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    a = b + rng.normal(scale=1e-4, size=b.shape).astype(np.float32)
    f = compare(a, b, atol=1e-5, rtol=1e-4)
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    assert f.max_abs == pytest.approx(np.abs(x - y).max())
    assert f.max_rel == pytest.approx(np.abs(x - y).max() / np.abs(y).max())
    assert f.cosine == pytest.approx(x @ y / np.linalg.norm(x) / np.linalg.norm(y))
    assert f.beyond == pytest.approx(1 - np.isclose(a, b, rtol=1e-4, atol=1e-5).mean())
    assert 0 < f.beyond < 1 and f.count == b.size


def test_default_atol_is_a_share_of_the_layers_scale() -> None:
    b = np.array([100.0, 1e-3, -50.0])
    a = b + np.array([1e-4, 5e-4, 0.0])
    f = compare(a, b)
    assert f.atol == pytest.approx(1e-5 * 100) and f.beyond == 0
    assert f.beyond == pytest.approx(1 - np.isclose(a, b, rtol=1e-4, atol=1e-3).mean())
    assert compare(a, b, atol=1e-5).beyond == pytest.approx(1 / 3)  # the near-zero element, with a fixed atol


def test_figures_of_nan_inf_and_zeros() -> None:
    nan, inf = float("nan"), float("inf")
    assert compare(np.array([nan, inf, 0.0]), np.array([nan, inf, 0.0])).agree
    f = compare(np.array([nan, 1.0]), np.array([1.0, 1.0]))
    assert f.beyond == 0.5 and f.max_abs != f.max_abs
    z = compare(np.zeros(4), np.zeros(4))
    assert (z.cosine, z.max_rel, z.beyond) == (1.0, 0.0, 0.0)


def test_param_diff_names_the_changed_tensor() -> None:
    a = {"w": np.ones((2, 2)), "b": np.zeros(2), "only": np.ones(1)}
    b = {"w": np.ones((2, 2)) + np.array([[0, 0.5], [0, 0]]), "b": np.zeros(2), "new": np.ones(1)}
    pd = param_diff(a, b)
    assert pd is not None and [r.name for r in pd.changed] == ["w"]
    (w,) = pd.changed
    assert w.max_abs == 0.5 and w.rel_norm == pytest.approx(0.5 / 2)
    assert (pd.only_a, pd.only_b) == (("only",), ("new",))
    assert param_diff(a, {"x": np.ones(1)}) is None


# --- the matching ----------------------------------------------------------------------------------------------
def test_route_names_become_one_module_path() -> None:
    assert key_of("onnx", "/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    assert key_of("onnx", "/c1/Conv") == key_of("pt2", "c1:conv2d") == key_of("torch", "c1") == "c1"
    assert key_of("onnx", "/Abs") == key_of("pt2", "abs_1") == "abs"
    assert key_of("stack", "s1") is None


def test_match_by_name_then_order_and_shape() -> None:
    s4, s1 = (1, 4, 8, 8), (1, 4)
    m = match("featcli", ["s1", "s2", "s3", "s4"], [s4, s4, s4, s1],
              "onnx", ["/s1/Conv", "/Abs", "/s3/Relu", "/extra/Identity", "/s4/Gemm"], [s4, s4, s4, (1, 9), s1])
    assert [(p.a, p.b, p.how) for p in m.pairs] == [(0, 0, "name"), (1, 1, "order"), (2, 2, "name"), (3, 4, "name")]
    assert m.only_b == (3,) and m.only_a == ()


def test_a_batch_norm_folded_into_its_conv_is_one_pair() -> None:
    """torch's ONNX export folds bn into the conv before it and drops dropout: the conv node is the group's output."""
    s8, s6 = (1, 8, 8, 8), (1, 8, 6, 6)
    names, shapes = ["s1", "s2", "s3", "s4", "s5", "s6"], [s8, s8, s8, s6, s6, (1, 3)]
    onnx = ["/s1/Conv", "/s3/Relu", "/s4/Conv", "/s6/Gemm"], [s8, s8, s6, (1, 3)]
    types = ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "Dropout", "Linear"]
    m = match("torch", names, shapes, "onnx", *onnx, types, ["Conv", "Relu", "Conv", "Gemm"])
    assert [(p.a, p.b, p.how) for p in m.pairs] == [(1, 0, "fused"), (2, 1, "name"), (4, 2, "fused"), (5, 3, "name")]
    assert m.only_a == (0, 3)
    # a layer that is not folded (a residual add the names missed) is not jumped over: it stays unmatched
    m = match("torch", names, shapes, "onnx", *onnx, [*types[:1], "add", *types[2:4], "mul", types[5]])
    assert [(p.a, p.b, p.how) for p in m.pairs][:1] == [(0, 0, "name")] and m.only_a == (1, 4)


def test_order_matching_keeps_a_layer_whose_shape_differs() -> None:
    m = match("stack", ["s1", "s2", "s3"], [(1, 1, 6, 6), (1, 1, 6, 6), (1, 1, 3, 3)],
              "stack", ["s1", "s2"], [(1, 1, 8, 8), (1, 1, 8, 8)])
    assert [(p.a, p.b) for p in m.pairs] == [(0, 0), (1, 1)] and m.only_a == (2,)


# --- whole runs --------------------------------------------------------------------------------------------------
def _json(*args: str) -> tuple[int, dict[str, Any], str]:
    r = _cli(*args, "--json")
    assert r.exit_code in (0, 1), r.output
    return r.exit_code, json.loads(r.stdout), r.stderr


@pytest.mark.slow
def test_agreeing_exports_exit_0(nets: dict[str, str]) -> None:
    module, onnx, pt2 = nets["module"], nets["ok.onnx"], nets["ok.pt2"]
    for a, b in [(module, onnx), (module, pt2), (onnx, pt2)]:
        extra = ["--weights-a", nets["ok.pt"]] if a == nets["module"] else []
        code, rec, _ = _json(a, b, nets["img"], *extra)
        assert code == 0 and rec["agree"] and rec["first"] is None
        assert len(rec["layers"]) == 6 and not rec["only_a"] and not rec["only_b"]


PAIRS = {
    "module-onnx": lambda n: [n["module"], n["ok.onnx"], "--weights-a", n["bad.pt"]],
    "module-pt2": lambda n: [n["module"], n["ok.pt2"], "--weights-a", n["bad.pt"]],
    "onnx-pt2": lambda n: [n["bad.onnx"], n["ok.pt2"]],
}


@pytest.mark.slow
@pytest.mark.parametrize("pair", list(PAIRS))
def test_a_changed_weight_is_found_at_its_layer(nets: dict[str, str], pair: str) -> None:
    args = PAIRS[pair](nets)
    code, rec, err = _json(*args[:2], nets["img"], *args[2:])
    assert code == 1 and rec["first"] == CHANGED, rec
    rows = rec["layers"]
    assert all(r["agree"] for r in rows[:CHANGED - 1])
    assert rows[CHANGED - 1]["first"] and "c2" in (rows[CHANGED - 1]["a"] + rows[CHANGED - 1]["b"])
    assert all(r["downstream"] for r in rows[CHANGED:])
    assert f"differ from layer {CHANGED}" in err


def test_two_weight_files_differ_at_the_changed_layer_and_tensor(weights: dict[str, str]) -> None:
    w = weights
    code, rec, err = _json(w["module"], w["module"], w["img"], "--weights-a", w["ok.pt"], "--weights-b", w["bad.pt"])
    assert code == 1 and rec["first"] == CHANGED and f"differ from layer {CHANGED} (c2)" in err
    assert [r["agree"] for r in rec["layers"]] == [True, True, False, False, False, False]
    assert [r["match"] for r in rec["layers"]] == ["name"] * 6
    assert [p["name"] for p in rec["params"]["changed"]] == ["c2.weight"]
    assert rec["params"]["changed"][0]["max_abs"] == pytest.approx(0.25)
    code, rec, _ = _json(w["module"], w["module"], w["img"], "--weights-a", w["ok.pt"], "--weights-b", w["ok.pt"])
    assert code == 0 and rec["params"]["changed"] == [] and rec["params"]["tensors"] == 6


def test_figures_of_a_run_equal_plain_torch(weights: dict[str, str]) -> None:
    """The max abs diff of the changed conv is torch's own, computed by hand from the two state dicts."""
    import torch

    from featcli.io.images import LoadOptions, load_image

    w = weights
    _, rec, _ = _json(w["module"], w["module"], w["img"], "--weights-a", w["ok.pt"], "--weights-b", w["bad.pt"])
    mod = _module(Path(w["img"]).parent)
    outs = []
    for f in (w["ok.pt"], w["bad.pt"]):
        m = mod.Net().eval()
        m.load_state_dict(torch.load(f, weights_only=True))
        img = load_image(w["img"], LoadOptions())
        x = torch.from_numpy(np.array(img.array)).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            outs.append(m.c2(m.r1(m.c1(x))))
    ref = compare(outs[0].numpy(), outs[1].numpy())
    row = rec["layers"][CHANGED - 1]
    assert row["max_abs"] == pytest.approx(ref.max_abs, rel=1e-6)
    assert row["beyond"] == pytest.approx(ref.beyond) and row["cosine"] == pytest.approx(ref.cosine)


def test_two_stacks_differ_at_the_changed_stage(tmp_path: Path) -> None:
    img = tmp_path / "g.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)).save(img)
    code, rec, err = _json("--stack-a", "conv:w=box relu conv:w=sobel_x abs",
                           "--stack-b", "conv:w=box relu conv:w=sobel_y abs", str(img))
    assert code == 1 and rec["first"] == 3 and [r["downstream"] for r in rec["layers"]] == [False] * 3 + [True]
    text = _cli("--stack-a", "conv:w=box relu conv:w=sobel_x abs", "--stack-b", "conv:w=box relu conv:w=sobel_y abs",
                str(img)).stdout.splitlines()
    marks = [ln.split("%", 1)[1].strip() for ln in text if "%" in ln]
    assert marks == ["✓", "✓", "✗ first diverging", "downstream ✗"], text
    code, rec, _ = _json("--stack-a", "conv:w=box relu", "--stack-b", "conv:w=box relu", str(img))
    assert code == 0 and rec["params"] is None
    assert set(rec) == {"agree", "first", "a", "b", "images", "atol", "atol_of_max", "rtol", "layers", "only_a",
                        "only_b", "params", "notes", "png", "html"}  # the keys docs/diff.md lists
    assert set(rec["layers"][0]) == {"index", "a", "b", "type_a", "type_b", "shape_a", "shape_b", "match", "agree",
                                     "first", "downstream", "worst", "max_abs", "max_rel", "cosine", "beyond",
                                     "count", "atol"}


def test_unmatched_layers_and_differing_shapes_are_rows(tmp_path: Path) -> None:
    img = tmp_path / "g.png"
    Image.fromarray(np.full((32, 32), 100, np.uint8)).save(img)
    code, rec, _ = _json("--stack-a", "conv:w=box relu", "--stack-b", "conv:w=box relu gap", str(img))
    assert code == 0 and rec["only_b"] == ["s3"]
    r = _cli("--stack-a", "conv:w=box relu", "--stack-b", "conv:w=box,p=1 relu", str(img))
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "shapes differ" in r.stdout and "1x1x30x30 vs 1x1x32x32" in r.stdout
    assert "differ from layer 1 (s1): shapes 1x1x30x30 and 1x1x32x32" in r.stderr


def test_shapes_that_differ_on_a_later_image_only_are_that_images_row(tmp_path: Path) -> None:
    d = tmp_path / "imgs"
    d.mkdir()
    for name, side in (("a_even", 32), ("b_odd", 33)):
        Image.fromarray(np.full((side, side), 90, np.uint8)).save(d / f"{name}.png")
    code, rec, err = _json("--stack-a", "maxpool:k=2", "--stack-b", "maxpool:k=2,ceil=1", str(d))
    (row,) = rec["layers"]
    assert code == 1 and row["max_abs"] is None and row["worst"].endswith("b_odd.png")
    assert (row["shape_a"], row["shape_b"]) == ([1, 1, 16, 16], [1, 1, 17, 17]) and "shapes 1x1x16x16" in err


def test_later_images_keep_only_the_matched_layers(tmp_path: Path) -> None:
    from featcli.run.config import RunConfig
    from featcli.run.diffsides import Side, SideSpec

    img = tmp_path / "g.png"
    Image.fromarray(np.full((12, 12), 80, np.uint8)).save(img)
    side = Side(SideSpec("A", stack=("conv:w=box", "relu", "gap")), RunConfig(stack=()))
    shape, prepared = side.prepare(str(img))
    run = side.run(prepared, {"s2"})
    assert shape == (1, 1, 12, 12) and [x.name for x in run.layers] == ["s1", "s2", "s3"]
    assert [x.tensor is not None for x in run.layers] == [False, True, False]
    np.testing.assert_allclose(run.layers[1].tensor, np.full((1, 1, 10, 10), 80 / 255), rtol=1e-6)


def test_an_option_for_one_side_says_so(weights: dict[str, str]) -> None:
    w = weights
    r = _cli("--stack-a", "relu", w["module"], w["img"], "--weights-b", w["ok.pt"], "--seed", "3", "-c", "rgb")
    assert r.exit_code == 1, r.output  # a relu is not the network: they differ, and say so
    assert "note: --seed applies to side A only" in r.stderr and "differ from layer 1" in r.stderr
    r = _cli("--stack-a", "relu", "--stack-b", "relu", w["img"], "--resize", "pad")
    assert r.exit_code == 2 and "--resize applies to" in r.stderr


def test_png_draws_the_first_diverging_layer(tmp_path: Path) -> None:
    img = tmp_path / "g.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)).save(img)
    out = tmp_path / "first.png"
    r = _cli("--stack-a", "conv:w=sobel_x relu", "--stack-b", "conv:w=scharr_x relu", str(img), "--png", str(out))
    assert r.exit_code == 1, r.output
    with Image.open(out) as pic:
        assert pic.size[0] > 200 and pic.text["featcli:layer"] == "s1"
    r = _cli("--stack-a", "conv:w=sobel_x relu", "--stack-b", "conv:w=scharr_x relu", str(img), "--png", str(out))
    assert r.exit_code == 1 and "exists" in r.stderr  # never overwritten without --force
    r = _cli("--stack-a", "relu", "--stack-b", "abs", str(img), "--png", str(img), "--force")
    assert r.exit_code == 1 and "input" in r.stderr and img.stat().st_size < 2000  # an input, never replaced
    vec = tmp_path / "vec.png"  # a layer without maps: one 1 x N map
    r = _cli("--stack-a", "gap flatten relu", "--stack-b", "gap flatten tanh", str(img), "--png", str(vec))
    assert r.exit_code == 1 and "differ from layer 3" in r.stderr
    with Image.open(vec) as pic:
        assert pic.text["featcli:layer"] == "s3"


@pytest.mark.parametrize("args, words", [
    (["--stack-a", "relu"], "side B is missing"),
    (["--stack-a", "relu", "--stack-b", "relu"], "no input image"),
    (["--stack-a", "relu", "--stack-b", "relu", "sample:photo", "--size", "8x8"], "--size applies to"),
    (["--stack-a", "relu", "x.onnx", "sample:photo", "--weights-b", "w.pt"], "--weights-b applies to a module"),
    (["--stack-a", "relu", "--stack-b", "relu", "sample:photo", "--png", "x.jpg"], "ending in .png"),
    (["--stack-a", "relu", "--stack-b", "relu", "sample:photo", "--force"], "--force applies to --png and --html"),
    (["a.txt", "b.txt", "sample:photo"], "side A 'a.txt': expected a featcli model file"),
])
def test_bad_usage_exits_2(args: list[str], words: str) -> None:
    r = _cli(*args)
    assert r.exit_code == 2, r.output
    assert words in r.stderr and "Traceback" not in r.output


def test_html_page_has_the_table_and_the_first_layers_maps(tmp_path: Path) -> None:
    img = tmp_path / "g.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 24), dtype=np.uint8)).save(img)
    page = tmp_path / "d.html"
    args = ["--stack-a", "conv:w=sobel_x relu gap", "--stack-b", "conv:w=scharr_x relu gap", str(img)]
    r = _cli(*args, "--html", str(page))
    assert r.exit_code == 1 and f"wrote {page}" in r.stdout, r.output
    text = page.read_text()
    assert "A and B differ from layer 1 (s1)" in text and "first diverging layer 1 (s1)" in text
    assert text.count("<tr") >= 4 and 'href="#first"' in text and 'id="first"' in text
    assert text.count('<figure class="map"') == 3  # one channel: A, B and |A-B|
    assert "<script src" not in text and "http://" not in text and "https://" not in text  # self-contained
    code, rec, _ = _json(*args, "--html", str(page), "--force")
    assert code == 1 and rec["html"] == str(page)
    same = _cli("--stack-a", "relu", "--stack-b", "relu", str(img), "--html", str(tmp_path / "same.html"))
    assert same.exit_code == 0 and '<figure class="map"' not in (tmp_path / "same.html").read_text()
    r = _cli(*args, "--html", str(page))
    assert r.exit_code == 1 and "exists" in r.stderr  # never overwritten without --force
