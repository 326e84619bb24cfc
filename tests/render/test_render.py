"""Feature-map grids and single maps: layout, colour scales, NaN handling, PNG output."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from featcli.enums import Norm
from featcli.errors import OutputError, UsageError
from featcli.render import (
    GridOptions,
    Tile,
    check_cmap,
    render_grid,
    render_map,
    save_png,
    tiles_from_array,
)

FIRST_COLOUR = 17  # palette entries below this are the grey ramp and the NaN colour
BAD = 16


def cmap_rgb(name: str, x: float) -> np.ndarray:
    return np.round(np.asarray(matplotlib.colormaps[name](x))[:3] * 255).astype(int)


def runs(mask_1d: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    edges = np.diff(np.concatenate([[0], mask_1d.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def tile_boxes(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, y1, x0, x1) of the colour-mapped areas of a grid drawn without colorbars."""
    colour = np.asarray(image) >= FIRST_COLOUR
    boxes = []
    for y0, y1 in runs(colour.any(axis=1)):
        for x0, x1 in runs(colour[y0:y1].any(axis=0)):
            boxes.append((y0, y1, x0, x1))
    return boxes


def ramp(h: int = 40, w: int = 60, lo: float = -5.0, hi: float = 5.0) -> np.ndarray:
    return np.linspace(lo, hi, h * w, dtype=np.float32).reshape(h, w)


def scales(image: Image.Image) -> list[list[object]]:
    return json.loads(image.info["featcli:scales"])


# ------------------------------------------------------------------------------------------- layout


def test_grid_has_one_tile_per_map_in_the_requested_columns() -> None:
    rng = np.random.default_rng(0)
    tiles = [Tile(f"m{i}", rng.standard_normal((30, 40)).astype(np.float32)) for i in range(7)]
    image = render_grid(tiles, GridOptions(columns=3, tile_px=80, colorbar=False))
    assert image.mode == "P"
    boxes = tile_boxes(image)
    assert len(boxes) == 7
    assert len({x0 for _, _, x0, _ in boxes}) == 3 and len({y0 for y0, _, _, _ in boxes}) == 3
    for y0, y1, x0, x1 in boxes:
        assert (y1 - y0, x1 - x0) == (60, 80)  # longest side = tile_px, aspect ratio kept
        assert np.asarray(image)[y0:y1, x0:x1].std() > 0  # not constant


def test_default_grid_is_a_landscape_slide_and_bounded() -> None:
    tiles = tiles_from_array(np.random.default_rng(1).random((16, 20, 20), dtype=np.float32))
    w, h = render_grid(tiles).size
    assert 4 / 3 <= w / h <= 16 / 9
    big = render_grid(tiles * 4, GridOptions(tile_px=1024, max_side=2000))
    assert max(big.size) <= 2000


def test_maps_are_box_averaged_before_colour_mapping_and_ranges_come_from_full_resolution() -> None:
    checker = np.where((np.indices((768, 1024)).sum(0) % 2) == 0, 1.0, -1.0).astype(np.float32)
    image = render_grid([Tile("checker", checker)], GridOptions(tile_px=256, colorbar=False, reduce="mean"))
    assert scales(image) == [["checker", "RdBu_r", -1.0, 1.0]]
    (y0, y1, x0, x1), *_ = tile_boxes(image)
    rgb = np.asarray(image.convert("RGB"))[y0:y1, x0:x1].reshape(-1, 3)
    # A 1-pixel checkerboard averages to 0: one flat centre colour, no moiré.
    assert (rgb == cmap_rgb("RdBu_r", 0.5)).all()


def test_peak_reduce_keeps_thin_lines_that_the_mean_fades() -> None:
    m = np.zeros((1024, 1024), np.float32)
    m[500, :] = 1.0  # a 1-pixel line, as an edge detector gives
    top = cmap_rgb("viridis", 1.0)
    for reduce, visible in (("mean", False), ("peak", True)):
        image = render_grid([Tile("edge", m)], GridOptions(tile_px=128, colorbar=False, reduce=reduce))
        assert scales(image)[0][2:] == [0.0, 1.0]  # the scale comes from the full-resolution map
        ((y0, y1, x0, x1),) = tile_boxes(image)
        rgb = np.asarray(image.convert("RGB"))[y0:y1, x0:x1]
        assert (rgb == top).all(axis=2).any() == visible


def test_small_maps_are_enlarged_with_crisp_pixels() -> None:
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    image = render_grid([Tile("tiny", m)], GridOptions(tile_px=64, colorbar=False))
    ((y0, y1, x0, x1),) = tile_boxes(image)
    idx = np.asarray(image)[y0:y1, x0:x1]
    assert idx.shape == (48, 64)
    assert len(np.unique(idx)) == 12 and (idx[:16, :16] == idx[0, 0]).all()


def test_more_maps_than_max_maps_are_left_out_and_counted() -> None:
    a = np.random.default_rng(2).random((10, 16, 16), dtype=np.float32)
    tiles = tiles_from_array(a[:8], stage="s1") + tiles_from_array(a[8:], stage="s2")
    image = render_grid(tiles, GridOptions(max_maps=4, colorbar=False))
    assert image.info["featcli:maps"] == "4 of 10"
    assert len(tile_boxes(image)) == 4
    # The quota is shared between stages: the small stage is not crowded out.
    assert [s[0] for s in scales(image)] == ["c0", "c1", "c0", "c1"]
    idx = np.asarray(image)
    last_row = idx[-30:]
    assert (last_row >= 12).any()  # the dark text of "+ 6 more maps not shown"


def test_the_tile_budget_is_balanced_between_stages_and_the_grid_says_what_was_left_out() -> None:
    """Issue 26: a small model's six stages of 6, 6, 6, 16, 16, 16 maps drew 66 tiles at 2972x2042, and the
    budget went 15, 15, 16 to the wide stages: now 32 tiles by default, the same number from each stage."""
    rng = np.random.default_rng(4)
    tiles = [t for i, n in enumerate((6, 6, 6, 16, 16, 16), 1)
             for t in tiles_from_array(rng.random((n, 12, 12), dtype=np.float32), stage=f"s{i}", prefix=f"s{i} ")]
    per_stage = lambda image: [sum(1 for s in scales(image) if s[0].startswith(f"s{i} ")) for i in range(1, 7)]  # noqa: E731
    image = render_grid(tiles, GridOptions(max_maps=64, colorbar=False))
    assert per_stage(image) == [6, 6, 6, 15, 15, 15]  # was 6, 6, 6, 15, 15, 16
    image = render_grid(tiles, GridOptions(colorbar=False))
    assert GridOptions().max_maps == 32 and image.info["featcli:maps"] == "30 of 66"
    assert per_stage(image) == [5] * 6  # channel c0..c4 of every stage, one column each
    from featcli.render.grid import left_out_note

    assert left_out_note({"s4": (11, 16), "s5": (11, 16)}, 32) == (
        "+ 22 more maps not shown (--max-maps 32, the first 5 of each stage): s4 11 of 16, s5 11 of 16")


def test_input_image_is_the_first_tile() -> None:
    pic = np.zeros((32, 48, 3), np.uint8)
    pic[..., 1] = 200
    image = render_grid([Tile("m", ramp())], GridOptions(tile_px=48, colorbar=False), input_image=pic)
    assert image.mode == "RGB"
    rgb = np.asarray(image)
    assert (rgb.reshape(-1, 3) == [0, 200, 0]).all(axis=1).sum() == 32 * 48


# ------------------------------------------------------------------------------------------ colours


def test_signed_map_is_not_clipped_and_zero_is_the_centre_colour() -> None:
    m = ramp()
    m[20, 30] = 0.0
    rgb = np.asarray(render_map(m).convert("RGB")).astype(int)
    assert (rgb[np.unravel_index(np.argmin(m), m.shape)] == cmap_rgb("RdBu_r", 0.0)).all()
    assert (rgb[np.unravel_index(np.argmax(m), m.shape)] == cmap_rgb("RdBu_r", 1.0)).all()
    assert (rgb[20, 30] == cmap_rgb("RdBu_r", 0.5)).all()


def test_signed_map_in_a_grid_gets_a_diverging_scale_centred_on_zero() -> None:
    m = ramp(lo=-5, hi=2)
    m[0, 1] = 0.0
    image = render_grid([Tile("signed", m)], GridOptions(tile_px=60, colorbar=False))
    assert scales(image) == [["signed", "RdBu_r", -5.0, 5.0]]
    ((y0, y1, x0, x1),) = tile_boxes(image)
    rgb = np.asarray(image.convert("RGB"))[y0:y1, x0:x1].astype(int)
    assert (rgb[0, 0] == cmap_rgb("RdBu_r", 0.0)).all()
    assert (rgb[0, 1] == cmap_rgb("RdBu_r", 0.5)).all()


def test_non_negative_map_gets_a_sequential_scale_and_cmap_overrides() -> None:
    m = ramp(lo=0, hi=3)
    assert render_map(m).info["featcli:cmap"] == "viridis"
    rgb = np.asarray(render_map(m, GridOptions(cmap="gray")).convert("RGB")).astype(int)
    assert (rgb[0, 0] == 0).all() and (rgb[-1, -1] >= 254).all()


def test_norms() -> None:
    small, big = ramp(lo=0, hi=1), ramp(lo=0, hi=10)
    spiky = ramp(lo=-1, hi=1)
    spiky[5, 5] = 1000.0
    tiles = [Tile("small", small, "s1"), Tile("big", big, "s1"), Tile("spiky", spiky, "s2")]
    by_norm = {norm: scales(render_grid(tiles, GridOptions(norm=norm))) for norm in Norm}
    # A colormap per map: only "spiky" is signed, so only it is on a zero-centred diverging scale.
    assert by_norm[Norm.PER_MAP] == [
        ["small", "viridis", 0.0, 1.0],
        ["big", "viridis", 0.0, 10.0],
        ["spiky", "RdBu_r", -1000.0, 1000.0],
    ]
    assert by_norm[Norm.STAGE][:2] == [["small", "viridis", 0.0, 10.0], ["big", "viridis", 0.0, 10.0]]
    unsigned = {norm: scales(render_grid(tiles[:2], GridOptions(norm=norm))) for norm in Norm}
    assert unsigned[Norm.PER_MAP] == [["small", "viridis", 0.0, 1.0], ["big", "viridis", 0.0, 10.0]]
    assert unsigned[Norm.STAGE] == [["small", "viridis", 0.0, 10.0], ["big", "viridis", 0.0, 10.0]]
    assert by_norm[Norm.SYMMETRIC][1] == ["big", "RdBu_r", -10.0, 10.0]
    _, cmap, lo, hi = by_norm[Norm.PERCENTILE][2]
    assert cmap == "RdBu_r" and lo == -hi and 0.9 < hi < 1.0  # the spike no longer sets the scale


def test_stage_norm_puts_smaller_maps_low_on_the_shared_scale() -> None:
    tiles = [Tile("small", ramp(lo=0, hi=1), "s1"), Tile("big", ramp(lo=0, hi=10), "s1")]
    image = render_grid(tiles, GridOptions(norm="stage", tile_px=60))
    assert image.info["featcli:scales"].count("10.0") == 2
    per_tile = [np.asarray(image.convert("RGB"))[y0:y1, x0:x1] for y0, y1, x0, x1 in tile_boxes(image)[:2]]
    assert len(np.unique(per_tile[0].reshape(-1, 3), axis=0)) < len(
        np.unique(per_tile[1].reshape(-1, 3), axis=0)
    )


def test_percentile_render_map_records_its_scale() -> None:
    m = ramp(lo=0, hi=1)
    m[0, 0] = 500.0
    info = render_map(m, GridOptions(norm=Norm.PERCENTILE, percentile=99)).info
    assert float(info["featcli:vmax"]) < 1.0 and info["featcli:cmap"] == "viridis"


@pytest.mark.parametrize("value", [0.0, 3.0, -2.0])
def test_constant_maps_do_not_divide_by_zero(value: float) -> None:
    m = np.full((20, 30), value, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = render_grid([Tile("flat", m), Tile("also flat", m)])
        single = render_map(m)
    assert len(np.unique(np.asarray(single))) == 1
    assert image.size[0] > 0


def test_nan_and_inf_get_their_own_colour_without_warnings() -> None:
    m = ramp()
    m[:10, :10] = np.nan
    m[30:, 50:] = np.inf
    m[30:, :5] = -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single = render_map(m)
        grid = render_grid(
            [Tile("holes", m), Tile("all nan", np.full((8, 8), np.nan))], GridOptions(tile_px=60)
        )
    idx = np.asarray(single)
    assert (idx[:10, :10] == 255).all() and (idx[30:, 50:] == 255).all() and (idx[30:, :5] == 255).all()
    assert (idx[10:30] != 255).all()
    palette = np.asarray(single.getpalette()[:768]).reshape(-1, 3)
    assert not (palette[:255] == palette[255]).all(axis=1).any()  # distinct from every scale colour
    finite = m[np.isfinite(m)]
    limit = float(max(-finite.min(), finite.max()))  # from the finite values only
    assert float(single.info["featcli:vmin"]) == -limit
    assert scales(grid)[0][2:] == [-limit, limit]
    assert (np.asarray(grid) == BAD).sum() > 100


# ----------------------------------------------------------------------------------------- options


def test_bad_options_and_maps_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="max_maps"):
        GridOptions(max_maps=0)
    with pytest.raises(UsageError, match="unknown norm 'bogus'"):
        GridOptions(norm="bogus")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="viridis"):
        check_cmap("viridi")
    with pytest.raises(UsageError, match="unknown colormap"):
        render_map(ramp(), GridOptions(cmap="nope"))
    with pytest.raises(UsageError, match=r"2-D.*\(2, 3, 4\)"):
        render_grid([Tile("cube", np.zeros((2, 3, 4)))])
    with pytest.raises(UsageError, match="no feature maps"):
        render_grid([])
    with pytest.raises(UsageError, match="2 labels for 3 maps"):
        tiles_from_array(np.zeros((3, 4, 4)), ["a", "b"])


def test_tiles_from_array_accepts_nchw_with_one_image() -> None:
    tiles = tiles_from_array(np.zeros((1, 2, 5, 6)), ["sobel_x", "sobel_y"], stage="s1", prefix="s1 conv · ")
    assert [t.label for t in tiles] == ["s1 conv · sobel_x", "s1 conv · sobel_y"]
    assert tiles[0].data.shape == (5, 6) and tiles[1].stage == "s1"


# ------------------------------------------------------------------------------------------- files


def test_save_png_round_trips_metadata(tmp_path: Path) -> None:
    image = render_grid([Tile("m", ramp())])
    command = "featcli run photo.jpg -k sobel_x -o grid.png --title 'naïve · ✓'"
    out = save_png(image, tmp_path / "grid.png", metadata={"featcli:command": command})
    with Image.open(out) as back:
        assert back.text["Software"] == "featcli 0.1.0"
        assert back.text["featcli:command"] == command
        assert back.text["featcli:norm"] == "per-map"
        assert back.mode == "P" and back.size == image.size
    assert not list(tmp_path.glob(".*part"))


def test_save_png_refuses_overwrite_and_inputs(tmp_path: Path) -> None:
    image = render_map(ramp())
    out = tmp_path / "map.png"
    save_png(image, out)
    before = out.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        save_png(render_map(ramp(lo=0)), out)
    assert out.read_bytes() == before
    save_png(render_map(ramp(lo=0)), out, force=True)
    assert out.read_bytes() != before
    with pytest.raises(OutputError, match="input"):
        save_png(image, out, force=True, inputs=[str(out)])
    with pytest.raises(OutputError, match=".png"):
        save_png(image, tmp_path / "map.jpg")


def test_render_imports_neither_pyplot_nor_the_cli() -> None:
    code = (
        "import sys, numpy as np\n"
        "from featcli.render import Tile, render_grid\n"
        "render_grid([Tile('m', np.ones((4, 4)))])\n"
        "bad = [m for m in ('matplotlib.pyplot', 'typer', 'rich') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PATH": "", "DISPLAY": ""})


@pytest.mark.parametrize("kind", ["noise", "smooth"])
def test_large_map_png_is_pixel_exact_whatever_the_zlib_strategy(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(3)
    m = rng.random((1000, 1100), dtype=np.float32) if kind == "noise" else ramp(1000, 1100, 0, 1)
    image = render_map(m)
    out = save_png(image, tmp_path / "map.png")
    with Image.open(out) as back:
        assert back.mode == "P"
        assert np.array_equal(np.asarray(back), np.asarray(image))
        assert back.getpalette() == image.getpalette()
