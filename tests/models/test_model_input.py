"""How an image becomes a network's input: --resize (crop, pad, stretch), --normalize, no torch on the way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from featcli.cli import app
from featcli.enums import Resize, Scale
from featcli.io.fit import fit, fitted
from featcli.io.images import LoadOptions, load_image
from featcli.io.normalize import Normalize
from featcli.models.service import model_input


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    """A 40x80 image: a red left half, a blue right half, a green 2-pixel frame."""
    a = np.zeros((40, 80, 3), np.uint8)
    a[:, :40, 0], a[:, 40:, 2] = 200, 200
    a[:2], a[-2:], a[:, :2], a[:, -2:] = (0, 255, 0), (0, 255, 0), (0, 255, 0), (0, 255, 0)
    path = tmp_path / "wide.png"
    Image.fromarray(a).save(path)
    return path


def test_the_three_fits_equal_pillow_and_keep_or_change_the_shapes(wide: Path) -> None:
    img = Image.open(wide).convert("RGB")
    for how, want in ((Resize.CROP, ImageOps.fit(img, (20, 20), Image.Resampling.LANCZOS)),
                      (Resize.PAD, ImageOps.pad(img, (20, 20), Image.Resampling.LANCZOS, color=0)),
                      (Resize.STRETCH, img.resize((20, 20), Image.Resampling.LANCZOS, reducing_gap=3.0))):
        got = load_image(wide, LoadOptions(size=(20, 20), resize=how)).array
        assert np.array_equal(got, np.asarray(want)), how
        assert np.array_equal(np.asarray(fit(img, (20, 20), how)), got)
    pad = load_image(wide, LoadOptions(size=(20, 20), resize=Resize.PAD)).array
    assert pad[:5].max() == 0 and pad[-5:].max() == 0 and pad[10, 10].max() > 0  # a 2:1 image: 5 rows of zeros
    crop = load_image(wide, LoadOptions(size=(20, 20), resize=Resize.CROP)).array
    assert crop[10, 2, 0] > 150 and crop[10, 17, 2] > 150 and crop[10, 2:18, 1].max() < 60  # no side frame
    assert fitted((40, 80), (20, 20), Resize.PAD) == "40x80 to 20x20 (long side, zero padding)"
    assert fitted((40, 40), (20, 20), Resize.CROP) == "40x40 to 20x20 (same aspect ratio)"


def test_a_jpeg_is_resized_to_a_fixed_size_on_the_fast_decode_road_too() -> None:
    from featcli.resources import sample_path

    # the fast JPEG decode returned the full-size pixels and skipped the resize a model file asks for
    assert load_image(sample_path("photo"), LoadOptions(size=(16, 16))).array.shape == (16, 16, 3)


def test_model_input_is_numpy_scaled_then_normalised(wide: Path) -> None:
    notes: list[str] = []
    norm = Normalize.parse("imagenet")
    _, x = model_input(str(wide), LoadOptions(normalize=norm, resize=Resize.PAD), (1, 3, 20, 20), None, notes)
    assert isinstance(x, np.ndarray) and x.shape == (1, 3, 20, 20) and x.dtype == np.float32
    plain = np.asarray(ImageOps.pad(Image.open(wide).convert("RGB"), (20, 20), Image.Resampling.LANCZOS, color=0))
    want = (plain.transpose(2, 0, 1)[None] / np.float32(255) - np.array(norm.mean, np.float32)[:, None, None]) \
        / np.array(norm.std, np.float32)[:, None, None]
    np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-6)
    assert notes == ["input resized from 40x80 to 20x20 (long side, zero padding)", "input normalised: imagenet"]


def test_normalize_values_and_refusals() -> None:
    assert Normalize.parse("0.5,0.25").per_channel(3) == ([0.5] * 3, [0.25] * 3)
    assert Normalize.parse("CLIP").name == "clip"
    for bad, words in (("imagenett", "expected imagenet, clip"), ("0.5", "MEAN,STD"), ("0.5,0", "above 0"),
                       ("1/2,1/2/3", "one per channel"), ("nan,1", "finite")):
        with pytest.raises(Exception, match=words):
            Normalize.parse(bad)
    with pytest.raises(Exception, match="3 channel values for an input of 1 channel .--channels rgb gives 3."):
        Normalize.parse("imagenet").apply(np.zeros((1, 1, 2, 2), np.float32))


def test_normalize_on_a_stack_is_the_same_on_both_engines_and_recorded(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    records = []
    for engine in ("numpy", "torch"):
        res = runner.invoke(app, ["run", "sample:photo", "conv:w=sobel_x", "--normalize", "0.5,0.25", "--engine",
                                  engine, "--json"])
        assert res.exit_code == 0, res.output
        records.append(json.loads(res.stdout))
    plain = runner.invoke(app, ["run", "sample:photo", "conv:w=sobel_x", "--json"])
    before = json.loads(plain.stdout)["stages"][0]
    for rec in records:
        assert rec["normalize"] == {"mean": [0.5], "std": [0.25]} and "normalize" not in json.loads(plain.stdout)
        # a Sobel kernel sums to 0: the mean cancels and the std scales every value by 4
        assert rec["stages"][0]["max"] == pytest.approx(4 * before["max"], rel=1e-5)


def test_a_model_file_records_resize_and_normalize_and_applies_them(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("a", "b"):
        for i in range(4):
            img = np.zeros((12, 24), np.uint8)
            img[:, :12] = 40 * i if name == "a" else 255 - 40 * i
            (tmp_path / "data" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp_path / "data" / name / f"{i}.png")
    model = tmp_path / "m.safetensors"
    res = runner.invoke(app, ["train", str(tmp_path / "data"), "conv:out=2,k=3", "gap", "flatten", "linear:out=2",
                              "--epochs", "1", "-c", "gray", "--normalize", "0.5,0.5", "--resize", "pad", "-o",
                              str(model), "-q"])
    assert res.exit_code == 0, res.output
    from featcli.engine.network import open_model

    load = open_model(str(model)).load_options()
    assert load.resize is Resize.PAD and load.normalize == Normalize((0.5,), (0.5,)) and load.scale is Scale.UNIT
    res = runner.invoke(app, ["run", "sample:photo", "--model", str(model), "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["normalize"] == {"mean": [0.5], "std": [0.5]}
    res = runner.invoke(app, ["run", "sample:photo", "--model", str(model), "--resize", "stretch"])
    assert "input resized from 240x320 to 12x24 (stretched)" in res.stderr, res.output
    res = runner.invoke(app, ["run", "sample:photo", "--model", str(model), "--normalize", "imagenet"])
    assert res.exit_code == 2 and "--normalize applies to stage stacks and --model networks" in res.stderr


def test_the_onnx_route_fits_the_image_and_says_so_under_the_header(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU()).eval()
    torch.onnx.export(m, (torch.zeros(1, 3, 16, 16),), str(tmp_path / "n.onnx"), dynamo=False)
    res = runner.invoke(app, ["run", "sample:photo", "--model", str(tmp_path / "n.onnx")], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[1] == "  input resized from 240x320 to 16x16 (short side, centre crop)", lines[:3]


def test_the_default_picture_is_the_last_layer_with_maps_wider_than_1x1() -> None:
    from featcli.models.layers import Recorder

    rec = Recorder()
    rec.add("tiny", "Conv2d", [np.ones((1, 2, 1, 1), np.float32)])  # the only maps so far: kept
    assert rec.last_maps is not None and rec.last_maps[0] == "tiny"
    rec.add("conv", "Conv2d", [np.ones((1, 2, 8, 8), np.float32)])
    rec.add("gap", "AdaptiveAvgPool2d", [np.ones((1, 2, 1, 1), np.float32)])  # a 1x1 map after it is no picture
    assert rec.last_maps[0] == "conv"
