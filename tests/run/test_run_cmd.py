"""`featcli run`: the tutorial examples to the digit, OpenCV agreement, learned weights, outputs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.resources import sample_path

POOL_INPUT = np.array([[9, 6, 6], [4, 2, 2], [2, 1, 8]], dtype=np.uint8)


def _photo(tmp_path: Path, h: int = 48, w: int = 64) -> Path:
    """A photo-like RGB image: gradients, a disc, an edge and noise (deterministic)."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    a = np.stack([x / w * 200, y / h * 180 + 20, 120 + 60 * np.sin(x / 5)], axis=-1)
    a[(x - 40) ** 2 + (y - 20) ** 2 < 100] = (250, 240, 30)
    a[:, :12] *= 0.3
    a += rng.normal(0, 8, a.shape)
    path = tmp_path / "photo.png"
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path)
    return path


def _run(runner: CliRunner, *args: str) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, ["run", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# --- the tutorial's worked examples ----------------------------------------------------------------------


def test_tutorial_conv_shape_640(runner: CliRunner, tmp_path: Path) -> None:
    Image.fromarray(np.zeros((640, 640, 3), np.uint8)).save(tmp_path / "img.png")
    rec = _run(runner, str(tmp_path / "img.png"), "conv:out=5,k=3x5,s=1x2,p=2", "--device", "cpu")
    (stage,) = rec["stages"]
    assert stage["predicted"] == stage["actual"] == [1, 5, 642, 320]
    assert stage["ok"] is True
    assert rec["params"] == 5 * 3 * 3 * 5 + 5


def test_random_conv_matches_seeded_torch_layer(runner: CliRunner, tmp_path: Path) -> None:
    img = _photo(tmp_path)
    out = tmp_path / "maps.npy"
    _run(runner, str(img), "conv:out=5,k=3x5,s=1x2,p=2", "--seed", "3", "--save", str(out))
    torch.manual_seed(3)
    layer = torch.nn.Conv2d(3, 5, (3, 5), (1, 2), 2)
    x = torch.tensor(np.asarray(Image.open(img))).permute(2, 0, 1).unsqueeze(0).float() / 255
    with torch.no_grad():
        expect = layer(x)
    torch.testing.assert_close(torch.from_numpy(np.load(out)), expect)


@pytest.mark.parametrize(("op", "expect"), [("maxpool", [[9, 6], [4, 8]]), ("avgpool", [[5.25, 4.0], [2.25, 3.25]])])
def test_tutorial_pooling_values(runner: CliRunner, tmp_path: Path, op: str, expect: list[list[float]]) -> None:
    Image.fromarray(POOL_INPUT).save(tmp_path / "m.png")
    out = tmp_path / "p.npy"
    _run(runner, str(tmp_path / "m.png"), f"{op}:k=2,s=1", "--channels", "gray", "--scale", "255",
         "--save", str(out))
    got = np.load(out)
    assert got.shape == (1, 1, 2, 2) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0, 0], np.array(expect, np.float32))


def test_pool_shortcut_options(runner: CliRunner) -> None:
    rec = _run(runner, str(sample_path("shapes")), "-k", "sobel_x", "-k", "sobel_y", "--pool", "max:k=2")
    assert [s["op"] for s in rec["stages"]] == ["conv", "maxpool"]
    assert rec["stages"][0]["actual"] == [1, 2, 238, 318]
    assert rec["stages"][1]["actual"] == [1, 2, 119, 159]
    assert rec["stages"][0]["labels"] == ["sobel_x", "sobel_y"]
    assert rec["stages"][1]["labels"] == ["sobel_x", "sobel_y"]
    rec = _run(runner, str(sample_path("shapes")), "relu", "--pool", "global")
    assert rec["output"] == [1, 3, 1, 1]


# --- agreement with OpenCV and with F.conv2d -----------------------------------------------------------------


@pytest.mark.parametrize("kernel", ["sobel_x", "sobel_y", "laplacian", "gaussian5"])
def test_matches_opencv_filter2d(runner: CliRunner, tmp_path: Path, kernel: str) -> None:
    cv2 = pytest.importorskip("cv2")
    from featcli.kernels import resolve

    img = _photo(tmp_path)
    out = tmp_path / "o.npy"
    k = resolve(kernel)
    p = k.shape[0] // 2
    _run(runner, str(img), f"conv:w={kernel},p={p},pm=reflect,mode=depthwise", "--save", str(out))
    got = np.load(out)[0]  # (C, H, W)
    a = np.asarray(Image.open(img)).astype(np.float32) / 255
    kern = np.array(k.weights, np.float32)
    ref = cv2.filter2D(a, -1, kern, borderType=cv2.BORDER_REFLECT_101)  # (H, W, C), correlation
    np.testing.assert_allclose(got, ref.transpose(2, 0, 1), atol=1e-5)


def test_magnitude_is_sobel_edge_image(runner: CliRunner, tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    img = _photo(tmp_path)
    out = tmp_path / "m.npy"
    _run(runner, str(img), "conv:w=sobel_x+sobel_y,p=1,pm=reflect,mode=gray", "magnitude", "--save", str(out),
         "--stages", "last")
    gray = np.asarray(Image.open(img).convert("RGB")).astype(np.float32) / 255
    lum = gray @ np.array([0.299, 0.587, 0.114], np.float32)
    gx = cv2.Sobel(lum, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(lum, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(np.load(out)[0, 0], np.sqrt(gx**2 + gy**2), atol=1e-5)


def test_learned_weights_equal_f_conv2d(runner: CliRunner, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    ckpt = tmp_path / "net.pt"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    img = _photo(tmp_path)
    out = tmp_path / "o.npy"
    _run(runner, str(img), f"conv:w={ckpt}:0.weight,p=1", "--save", str(out))
    from featcli.io.images import array_to_tensor

    got = torch.from_numpy(np.load(out))
    x = array_to_tensor(np.asarray(Image.open(img)))  # the very tensor featcli feeds the stage
    with torch.no_grad():
        torch.testing.assert_close(got, F.conv2d(x, net[0].weight, net[0].bias, padding=1), rtol=0, atol=0)
        tutorial = torch.tensor(np.asarray(Image.open(img))).permute(2, 0, 1).unsqueeze(0).float() / 255
        torch.testing.assert_close(got, net[0](tutorial), rtol=0, atol=1e-6)  # other layout: rounding only


def test_learned_weight_channel_mismatch(runner: CliRunner, tmp_path: Path) -> None:
    ckpt = tmp_path / "w.pt"
    torch.save({"conv.weight": torch.randn(8, 64, 3, 3)}, ckpt)
    res = runner.invoke(app, ["run", str(_photo(tmp_path)), f"conv:w={ckpt}:conv.weight"])
    assert res.exit_code == 1, res.output
    assert "64 input channels" in res.stderr and "Traceback" not in res.output


# --- outputs -----------------------------------------------------------------------------------------------


def test_grid_png_with_metadata(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    res = runner.invoke(app, ["run", str(sample_path("shapes")), "-k", "sobel_x", "-k", "sobel_y", "--pool",
                              "max:k=2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "✓" in res.stdout
    img = Image.open(out)
    assert "featcli run" in img.text["featcli:command"] and "sobel_x" in img.text["featcli:command"]
    assert img.text["Software"].startswith("featcli ")
    assert len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 20


def test_single_map_is_full_resolution(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "edges.png"
    _run(runner, str(sample_path("shapes")), "conv:w=sobel_x+sobel_y,p=1", "magnitude", "-o", str(out), "--raw")
    img = Image.open(out)
    assert img.size == (320, 240)
    assert np.asarray(img).std() > 0
    # by default one map is a labelled picture: the map at a whole-number zoom, a title and a colour bar
    labelled = tmp_path / "labelled.png"
    _run(runner, str(sample_path("shapes")), "conv:w=sobel_x+sobel_y,p=1", "magnitude", "-o", str(labelled))
    assert Image.open(labelled).width > 640 and Image.open(labelled).height > 480


def test_out_dir_one_file_per_stage_and_stage_selection(runner: CliRunner, tmp_path: Path) -> None:
    rec = _run(runner, str(sample_path("shapes")), "conv:w=sobel_x+sobel_y", "relu", "maxpool:k=2", "flatten",
               "--out-dir", str(tmp_path))
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["shapes_s1_conv.png", "shapes_s2_relu.png", "shapes_s3_maxpool.png"]
    assert len(rec["outputs"]) == 3
    sub = tmp_path / "sub"
    sub.mkdir()
    _run(runner, str(sample_path("shapes")), "conv:w=sobel_x", "relu", "--out-dir", str(sub), "--stages", "2")
    assert [p.name for p in sub.glob("*.png")] == ["shapes_s2_relu.png"]


def test_save_npz_and_pt(runner: CliRunner, tmp_path: Path) -> None:
    _run(runner, str(sample_path("checkerboard")), "conv:w=laplacian", "abs", "--save", str(tmp_path / "m.npz"))
    z = np.load(tmp_path / "m.npz")
    assert sorted(z.files) == ["s1_conv", "s2_abs"]
    assert z["s1_conv"].shape == (1, 1, 254, 254) and z["s1_conv"].dtype == np.float32
    assert (z["s2_abs"] >= 0).all() and (z["s1_conv"] < 0).any()
    _run(runner, str(sample_path("checkerboard")), "conv:w=laplacian", "--save", str(tmp_path / "m.pt"))
    d = torch.load(tmp_path / "m.pt", weights_only=True)
    assert list(d) == ["s1_conv"] and d["s1_conv"].shape == (1, 1, 254, 254)


def test_existing_output_needs_force_and_input_never_overwritten(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    out.write_bytes(b"keep me")
    res = runner.invoke(app, ["run", str(sample_path("shapes")), "relu", "-o", str(out)])
    assert res.exit_code == 1 and "--force" in res.stderr
    assert out.read_bytes() == b"keep me"
    assert runner.invoke(app, ["run", str(sample_path("shapes")), "relu", "-o", str(out), "--force"]).exit_code == 0
    img = tmp_path / "in.png"
    img.write_bytes(sample_path("shapes").read_bytes())
    before = img.read_bytes()
    res = runner.invoke(app, ["run", str(img), "relu", "-o", str(img), "--force"])
    assert res.exit_code == 1 and "input" in res.stderr
    assert img.read_bytes() == before


def test_refused_stage_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    res = runner.invoke(app, ["run", str(sample_path("shapes")), "relu", "maxpool:k=999", "-o", str(out)])
    assert res.exit_code == 1
    assert "stage 2" in res.stderr and "maxpool:k=999" in res.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["relu"], 2, "no input image"),
        (["{img}", "conv:bogus=1"], 2, "unknown key"),
        (["{img}", "-k", "sobel_q"], 1, "sobel_q"),
        (["{img}", "relu", "--pool", "median:k=2"], 2, "--pool"),
        (["{img}", "relu", "--device", "tpu"], 2, "--device"),
        (["{img}", "relu", "--save", "x.csv"], 2, "--save"),
        (["{img}", "relu", "--stages", "7"], 2, "--stages"),
        (["missing.png", "relu"], 1, "no such file"),
    ],
)
def test_errors_one_line(runner: CliRunner, args: list[str], code: int, message: str) -> None:
    args = [a.replace("{img}", str(sample_path("shapes"))) for a in args]
    res = runner.invoke(app, ["run", *args])
    assert res.exit_code == code, res.output
    assert message in res.output
    assert "Traceback" not in res.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_request_without_cuda_fails(runner: CliRunner) -> None:
    res = runner.invoke(app, ["run", str(sample_path("shapes")), "relu", "--device", "cuda"])
    assert res.exit_code == 1 and "CUDA is not available" in res.stderr


# --- a grid for every stage kind -----------------------------------------------------------------------------

KINDS = [
    ("conv:w=sobel_x+sobel_y", 2, "RdBu_r"),
    ("conv:out=3,k=3,s=2", 3, None),
    ("convt:out=2,k=2,s=2", 2, None),
    ("maxpool:k=2", 3, "viridis"),
    ("avgpool:k=3,s=2", 3, "viridis"),
    ("gap", 3, "viridis"),
    ("adaptivemax:o=4x4", 3, "viridis"),
    ("relu", 3, "viridis"),
    ("sigmoid", 3, "viridis"),
    ("tanh", 3, "viridis"),
    ("bn", 3, "RdBu_r"),
    ("dropout", 3, "viridis"),
    ("magnitude", 1, "viridis"),
]


@pytest.mark.parametrize(("stage", "maps", "cmap"), KINDS, ids=[k[0] for k in KINDS])
def test_grid_for_each_stage_kind(runner: CliRunner, tmp_path: Path, stage: str, maps: int, cmap: str | None) -> None:
    out = tmp_path / "g.png"
    res = runner.invoke(app, ["run", str(sample_path("shapes")), stage, "-o", str(out), "--show-input"])
    assert res.exit_code == 0, res.output
    img = Image.open(out)
    assert img.text["featcli:maps"] == f"{maps} of {maps}"
    scales = json.loads(img.text["featcli:scales"])
    assert len(scales) == maps
    for label, used, vmin, vmax in scales:
        assert label.startswith("s1 ")
        if cmap:
            assert used == cmap
        if used == "RdBu_r":  # signed: symmetric about zero, never clipped
            assert vmin == -vmax
    rgb = np.asarray(img.convert("RGB"))
    assert rgb.shape[0] > 100 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10  # not a blank picture


def test_max_maps_says_how_many_were_left_out(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "g.png"
    res = runner.invoke(app, ["run", str(sample_path("shapes")), "conv:out=20,k=3", "-o", str(out), "--max-maps", "6"])
    assert res.exit_code == 0, res.output
    assert Image.open(out).text["featcli:maps"] == "6 of 20"


@pytest.mark.parametrize(("columns", "has_op"), [("80", False), ("120", True)])
def test_table_fits_the_terminal(runner: CliRunner, monkeypatch: pytest.MonkeyPatch, columns: str,
                                 has_op: bool) -> None:
    from featcli.cli import console

    monkeypatch.setenv("COLUMNS", columns)
    console._consoles.cache_clear()
    res = runner.invoke(app, ["run", str(sample_path("shapes")), "conv:out=8,k=3,p=1", "relu", "gap"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert all(len(line.rstrip()) <= int(columns) for line in lines)
    header = next(line for line in lines if "zeros" in line)
    assert ("op" in header.split()) is has_op and ("predicted" in header) is has_op and "1x8x1x1" in res.stdout


def test_torchscript_weights_only_with_the_opt_in(runner: CliRunner, tmp_path: Path) -> None:
    import warnings

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(net).save(str(tmp_path / "ts.pt"))  # type: ignore[no-untyped-call]
    stage = f"conv:w={tmp_path / 'ts.pt'}:0.weight,p=1"
    res = runner.invoke(app, ["run", str(sample_path("shapes")), stage])
    assert res.exit_code == 1 and "--trust-torchscript" in res.stderr
    rec = _run(runner, str(sample_path("shapes")), stage, "--trust-torchscript")
    assert rec["stages"][0]["actual"] == [1, 4, 240, 320]


def test_output_to_stdout_and_new_folders(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["run", "sample:shapes", "-k", "sobel_x", "-o", "-"])
    assert res.exit_code == 0, res.output
    assert res.stdout_bytes.startswith(b"\x89PNG\r\n\x1a\n") and "wrote the PNG to standard output" in res.stderr
    import io as _io

    assert Image.open(_io.BytesIO(res.stdout_bytes)).width > 318  # the labelled picture of the one map
    res = runner.invoke(app, ["run", "sample:shapes", "sample:photo", "-k", "sobel_x", "-o", "-"])
    assert res.exit_code == 2 and "-o - writes one PNG to standard output" in res.stderr
    # missing folders are made, as mkdir -p does; a file in the way is refused before any work
    res = runner.invoke(app, ["run", "sample:shapes", "sample:photo", "-k", "sobel_x", "-o", "a/b/{stem}.png",
                              "--out-dir", "c/d", "-q"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "a/b").iterdir()) == ["photo.png", "shapes.png"]
    assert len(list((tmp_path / "c/d").iterdir())) == 2
    (tmp_path / "f").write_text("x")
    res = runner.invoke(app, ["run", "sample:shapes", "-k", "sobel_x", "-o", "f/x.png"])
    assert res.exit_code == 1 and "cannot create folder 'f': 'f' is a file" in res.stderr
    res = runner.invoke(app, ["run", "sample:shapes", "-k", "sobel_x", "-o", "x.jpg"])
    assert res.exit_code == 2 and "featcli writes PNG" in res.stderr


def test_batch_summary_says_where_the_files_went(runner: CliRunner, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["run", "sample:shapes", "sample:photo", "-k", "sobel_x", "-o", "maps/{stem}.png",
                              "--save", "raw/{stem}.npz"])
    assert res.exit_code == 0, res.output
    assert res.stderr.strip().endswith("; wrote 4 files in maps/ and raw/"), res.stderr
    res = runner.invoke(app, ["run", "sample:shapes", "sample:photo", "-k", "sobel_x"])
    assert res.stderr.strip().endswith("; wrote no files"), res.stderr
