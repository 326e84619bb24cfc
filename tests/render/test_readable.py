"""Pictures for people: one colormap per grid, round-off drawn as 0, round ticks, thin edges kept on big
maps, one row per stage on a landscape slide, sizes as WxH, labelled single maps, PNG bytes (issue #11)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw

from featcli.render import (
    GridOptions,
    Tile,
    render_grid,
    render_map,
    render_single,
    tiles_from_array,
)
from featcli.render.paint import tick_choices

FIRST_COLOUR = 17  # palette entries below this are the grey ramp and the NaN colour


def lut_rgb(name: str) -> set[tuple[int, int, int]]:
    """Every colour a colormap can give, as matplotlib samples it (255 levels is finer than any grid's)."""
    rgba = matplotlib.colormaps[name](np.linspace(0, 1, 1024))
    return {tuple(int(c) for c in row) for row in np.round(np.asarray(rgba)[:, :3] * 255)}


def cmap_rgb(name: str, x: float) -> np.ndarray:
    return np.round(np.asarray(matplotlib.colormaps[name](x))[:3] * 255).astype(int)


def runs(mask_1d: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask_1d.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def tile_boxes(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, y1, x0, x1) of the colour-mapped areas of a grid drawn without colorbars, in reading order."""
    colour = np.asarray(image) >= FIRST_COLOUR
    boxes = []
    for y0, y1 in runs(colour.any(axis=1)):
        for x0, x1 in runs(colour[y0:y1].any(axis=0)):
            boxes.append((y0, y1, x0, x1))
    return boxes


def tile_rgb(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = box
    return np.asarray(image.convert("RGB"))[y0:y1, x0:x1].astype(int)


@pytest.fixture
def drawn_text(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every string Pillow draws while the test runs."""
    seen: list[str] = []
    original = ImageDraw.ImageDraw.text

    def record(self: ImageDraw.ImageDraw, xy: object, text: str, *args: object, **kwargs: object) -> None:
        seen.append(text)
        original(self, xy, text, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", record)
    yield seen


def smooth(h: int = 60, w: int = 80, lo: float = 0.0, hi: float = 5.0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    t = (np.sin(x / 7.0) * np.cos(y / 5.0) + 1) / 2
    return (lo + (hi - lo) * t).astype(np.float32)


# ---------------------------------------------------------------------------------------- colours


def test_signed_tiles_diverge_and_non_negative_tiles_are_sequential() -> None:
    """Issue 26: a non-negative map (a relu, a positive stage's map) gets a sequential colormap even when
    another tile of the grid is signed: no negative ticks on a map that has none."""
    pos, neg = smooth(lo=0.5, hi=5.0), smooth(lo=-0.05, hi=5.0)
    tiles = [
        Tile("s1 a", pos, "s1"),
        Tile("s1 b", neg, "s1"),
        Tile("s2 relu a", np.maximum(pos, 0), "s2"),
        Tile("s2 relu b", np.maximum(neg, 0), "s2"),
    ]
    image = render_grid(tiles, GridOptions(tile_px=80, colorbar=False))
    boxes = tile_boxes(image)
    assert len(boxes) == 4
    for box, cmap in zip(boxes, ("viridis", "RdBu_r", "viridis", "viridis"), strict=True):
        assert {tuple(c) for c in tile_rgb(image, box).reshape(-1, 3)} <= lut_rgb(cmap), box
    assert [s[1] for s in _scales(image)] == ["viridis", "RdBu_r", "viridis", "viridis"]
    assert min(s[2] for s in _scales(image) if s[1] == "viridis") >= 0  # no negative ticks
    # --norm stage: one scale per stage, diverging only where the stage has a negative value.
    image = render_grid(tiles, GridOptions(tile_px=80, colorbar=False, norm="stage"))
    assert [s[1] for s in _scales(image)] == ["RdBu_r", "RdBu_r", "viridis", "viridis"]


def test_the_grid_says_which_colour_scales_it_uses(drawn_text: list[str]) -> None:
    """Issue 26: the README said "one colour scale" while the default is one per map; the picture says which."""
    tiles = [Tile("a", smooth(lo=0.0, hi=1.0), "s1"), Tile("b", smooth(lo=-2.0, hi=3.0), "s1")]
    render_grid(tiles, GridOptions(tile_px=200))
    assert any(t.startswith("each map its own scale (--norm per-map); RdBu_r: signed, 0 at centre; viridis: "
                            "non-negative") for t in drawn_text), drawn_text
    drawn_text.clear()
    render_grid(tiles, GridOptions(tile_px=200, norm="stage"))
    assert any("one scale for all maps (--norm stage)" in t for t in drawn_text), drawn_text


def test_percentile_scale_says_what_it_clips(drawn_text: list[str]) -> None:
    """Issue 26: a zero-padding border brighter than every real edge: the percentile scale clips it and the
    picture says what share of the values lies beyond the scale."""
    from featcli.render import render_single

    m = (np.random.default_rng(0).random((200, 200)) * 5).astype(np.float32)  # real edges: 0 .. 5
    m[0, :], m[-1, :], m[:, 0], m[:, -1] = 8.8, 8.8, 8.8, 8.8  # the padding border: 2% of the values
    image = render_single(Tile("s2 magnitude", m), GridOptions(norm="percentile", percentile=95))
    assert json.loads(image.info["featcli:scales"])[0][3] < 5.0  # the border no longer sets the top colour
    assert any(re.search(r"= P95 of the map, (9\.\d|10)% of values beyond it", t) for t in drawn_text), drawn_text
    drawn_text.clear()
    render_grid([Tile("a", m), Tile("b", 2 * m)], GridOptions(norm="percentile", percentile=95, tile_px=200))
    assert any(re.search(r"each map to its P95, (9\.\d|10)% beyond it in the end colours", t) for t in drawn_text)


def test_round_off_is_drawn_as_zero_and_does_not_make_a_map_signed() -> None:
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal((40, 60)) * 3e-9).astype(np.float32)  # what cancelling sums leave
    relu_like = np.maximum(smooth(40, 60, -2, 5), 0) + np.where(noise < 0, noise, 0)  # -3e-9 where 0
    tiles = [Tile("edges", smooth(40, 60, 0, 5), "s1"), Tile("noise", noise, "s1"), Tile("relu", relu_like, "s1")]
    image = render_grid(tiles, GridOptions(tile_px=60, colorbar=False))
    boxes = tile_boxes(image)
    noise_rgb, relu_rgb = tile_rgb(image, boxes[1]), tile_rgb(image, boxes[2])
    assert (noise_rgb == cmap_rgb("viridis", 0.0)).all()  # flat: 0, the low end of the scale
    zero = relu_like <= 0
    small = np.asarray(Image.fromarray(zero.astype(np.uint8)).resize((60, 40), Image.Resampling.NEAREST))
    assert (relu_rgb[small.astype(bool)] == cmap_rgb("viridis", 0.0)).all()
    assert all(s[1] == "viridis" for s in _scales(image))


def test_round_off_is_measured_against_ref_and_earlier_stages() -> None:
    """``gap`` of a Sobel map: -8e-10 and -8e-8 are round-off of values up to 9.16."""
    gap = [np.full((1, 1), -8.2e-10, np.float32), np.full((1, 1), -8.4e-8, np.float32)]
    alone = render_grid([Tile("x", gap[0], "s2"), Tile("y", gap[1], "s2")], GridOptions(tile_px=40))
    for ref_tiles, zero in (
        ([Tile("x", gap[0], "s2", ref=9.16), Tile("y", gap[1], "s2", ref=9.16)], cmap_rgb("viridis", 0.0)),
        (
            [Tile("conv", smooth(lo=-9.16, hi=9.16), "s1"), Tile("x", gap[0], "s2"), Tile("y", gap[1], "s2")],
            cmap_rgb("viridis", 0.0),  # the gap stage is not signed: its own sequential scale
        ),
    ):
        image = render_grid(ref_tiles, GridOptions(tile_px=40, colorbar=False))
        for box in tile_boxes(image)[-2:]:  # the colour of 0 (the low end: the gap stage is not signed)
            assert (np.abs(tile_rgb(image, box).astype(int) - zero).max(axis=-1) <= 8).all()
        assert [s[2:] for s in _scales(image)[-2:]] == [[0.0, 0.0], [0.0, 0.0]]
    # With nothing to measure against the values are drawn as they are, on their stage's scale.
    assert _scales(alone)[1][2:] == pytest.approx([-8.4e-8, -8.4e-8])


def test_constant_maps_are_flat_and_their_bar_shows_the_one_value(drawn_text: list[str]) -> None:
    image = render_grid([Tile("zero", np.zeros((30, 40), np.float32))], GridOptions(tile_px=60))
    idx = np.asarray(image)
    assert len(np.unique(idx[idx >= FIRST_COLOUR])) == 1  # map and swatch one colour: no invented 0..1 ramp
    assert _scales(image) == [["zero", "viridis", 0.0, 0.0]]
    assert "1" not in drawn_text and any("all values 0" in t for t in drawn_text)
    # Constant maps of one stage (a gap stage) keep their order on the stage's scale.
    tiles = [Tile(f"c{i}", np.full((1, 1), v, np.float32), "s1") for i, v in enumerate((0.2, 0.5, 0.9))]
    image = render_grid(tiles, GridOptions(tile_px=40, colorbar=False))
    firsts = [tile_rgb(image, b)[0, 0] for b in tile_boxes(image)]
    for got, x in zip(firsts, (0.0, (0.5 - 0.2) / 0.7, 1.0), strict=True):
        assert np.abs(got - cmap_rgb("viridis", x)).max() <= 4


def test_colour_bar_ticks_are_round_numbers(drawn_text: list[str]) -> None:
    m = smooth(lo=-9.16, hi=9.16)
    m[0, 0], m[-1, -1] = -9.16, 9.16
    render_grid([Tile("edges", m)], GridOptions(tile_px=256))
    ticks = [t for t in drawn_text if t.lstrip("-").replace(".", "").isdigit()]
    assert ticks and "9.16" not in ticks and "-9.16" not in ticks and "0" in ticks
    values = [float(t) for t in ticks]
    step = values[1] - values[0]
    assert step in (1, 2, 5, 10) and all(math.isclose(v / step, round(v / step)) for v in values)
    assert tick_choices(-9.16, 9.16, 9)[0] == [-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]
    assert tick_choices(0.0, 4.51, 5)[0] == [0.0, 1.0, 2.0, 3.0, 4.0]


# ------------------------------------------------------------------------------------- big maps


def test_a_one_pixel_edge_of_a_12_mp_map_survives_the_default_reduction() -> None:
    rng = np.random.default_rng(1)
    m = (rng.standard_normal((3000, 4000)) * 0.01).astype(np.float32)
    m[1500, :] = 1.0  # a 1-pixel edge, as Sobel gives on a photo
    m[:, 2001] = -1.0
    image = render_grid([Tile("edges", m)], GridOptions(tile_px=256, colorbar=False))
    (box,) = tile_boxes(image)
    rgb = tile_rgb(image, box)
    assert rgb.shape[:2] == (192, 256)
    top, bottom = cmap_rgb("RdBu_r", 1.0), cmap_rgb("RdBu_r", 0.0)
    rows = (np.abs(rgb - top).sum(axis=2) <= 30).mean(axis=1)
    cols = (np.abs(rgb - bottom).sum(axis=2) <= 30).mean(axis=0)
    assert rows.max() > 0.95 and cols.max() > 0.95  # whole rows/columns at full strength: high contrast
    background = rgb[:50, :50].reshape(-1, 3)
    assert (np.abs(background - cmap_rgb("RdBu_r", 0.5)).sum(axis=1) < 60).mean() > 0.9  # noise stays pale


# --------------------------------------------------------------------------------------- layout


def test_one_row_per_stage_and_one_column_per_channel() -> None:
    a = np.random.default_rng(2).random((4, 30, 40), dtype=np.float32)
    tiles = tiles_from_array(a[:2], ["x", "y"], stage="s1") + tiles_from_array(a[2:], ["x", "y"], stage="s2")
    pic = np.zeros((30, 40, 3), np.uint8)
    pic[..., 0] = 200
    image = render_grid(tiles, GridOptions(tile_px=80, colorbar=False), input_image=pic)
    ys, xs = np.nonzero((np.asarray(image) == [200, 0, 0]).all(axis=2))
    maps = [b for b in tile_boxes(_maps_only(image)) if not (b[2] <= xs.mean() < b[3])]
    assert len(maps) == 4
    (s1x, s1y, s2x, s2y) = maps
    assert s1x[0] == s1y[0] == ys.min() and s2x[0] == s2y[0] > s1x[1]  # a row per stage, input beside s1
    assert s1x[2] == s2x[2] and s1y[2] == s2y[2]  # one column per channel
    assert xs.max() < s1x[2]  # the input is a column of its own


def test_a_stage_with_more_maps_starts_its_own_row() -> None:
    tiles = tiles_from_array(np.ones((3, 20, 20)) * np.arange(3)[:, None, None], stage="s1")
    tiles += tiles_from_array(np.ones((1, 20, 20)), stage="s2")
    image = render_grid(tiles, GridOptions(tile_px=40, colorbar=False, columns=4))
    boxes = tile_boxes(image)
    assert len({b[0] for b in boxes[:3]}) == 1 and boxes[3][0] > boxes[0][1] and boxes[3][2] == boxes[0][2]


def test_two_landscape_maps_make_a_landscape_picture_with_a_one_line_title() -> None:
    tiles = tiles_from_array(np.random.default_rng(3).random((2, 238, 318), dtype=np.float32), stage="s1")
    short = render_grid(tiles, GridOptions(title="photo.jpg · conv"))
    long = render_grid(tiles, GridOptions(title="samples/" + "very_long_folder_name/" * 12 + "photo.jpg · conv"))
    for image in (short, long):
        w, h = image.size
        assert 4 / 3 <= w / h <= 1.8  # a 4:3 .. 16:9 slide
    # the title never wraps onto a second line, and widens the picture at most to 16:9
    assert long.size[1] == short.size[1] and short.size[0] <= long.size[0] <= round(short.size[1] * 16 / 9) + 1
    one = render_grid(tiles[:1], GridOptions(title="samples/photo.jpg · conv -> relu -> maxpool"))
    alone = render_grid(tiles[:1])
    assert one.size[0] > alone.size[0]  # a narrow picture widens (up to 16:9) to show the title whole
    assert one.size[0] <= max(alone.size[0], round(one.size[1] * 16 / 9) + 1)


def test_a_chain_of_single_maps_runs_left_to_right() -> None:
    tiles = [Tile(f"s{i} m", np.random.default_rng(i).random((60, 80), dtype=np.float32), f"s{i}") for i in (1, 2, 3)]
    image = render_grid(tiles, GridOptions(tile_px=80, colorbar=False))
    boxes = tile_boxes(image)
    assert len({b[0] for b in boxes}) == 1 and [b[2] for b in boxes] == sorted(b[2] for b in boxes)
    assert image.size[0] > image.size[1]


def test_sizes_are_width_x_height_in_pixels(drawn_text: list[str]) -> None:
    pic = np.zeros((240, 320, 3), np.uint8)
    render_grid([Tile("m", np.zeros((238, 318), np.float32))], input_image=pic)
    joined = " ".join(drawn_text)
    assert "320x240 px" in joined and "318x238 px" in joined and "240x320" not in joined


# ---------------------------------------------------------------------------------- single maps


def test_single_map_is_labelled_by_default(drawn_text: list[str]) -> None:
    m = smooth(238, 318, -4.44, 4.51)
    image = render_single(Tile("s1 conv · sobel_x", m), GridOptions(title="photo.jpg · conv"))
    assert image.mode == "P" and image.size[0] > 2 * 318  # enlarged 2x, with margins
    assert "photo.jpg · conv" in drawn_text and "s1 conv · sobel_x" in drawn_text
    assert any("318x238 px" in t and "2x" in t for t in drawn_text)
    assert {"-4", "0", "4"} <= set(drawn_text)  # a colour bar with values
    idx = np.asarray(image)
    rows = np.flatnonzero((idx >= FIRST_COLOUR).any(axis=1))
    bar = idx[rows[-3]]
    assert len(np.unique(bar[bar >= FIRST_COLOUR])) > 100  # the colour bar under the map
    assert image.info["featcli:cmap"] == "RdBu_r" and float(image.info["featcli:vmax"]) == pytest.approx(4.51)
    # The map itself, pixel for pixel (each value a 2x2 block).
    top = rows[0]
    cols = np.flatnonzero(idx[top] >= FIRST_COLOUR)
    shown = np.asarray(image.convert("RGB"))[top : top + 476 : 2, cols[0] : cols[0] + 636 : 2]
    assert shown.shape[:2] == m.shape
    assert (shown[m.argmax() // 318, m.argmax() % 318] == cmap_rgb("RdBu_r", 1.0)).all()


def test_raw_single_map_is_the_bare_palette_image() -> None:
    m = smooth(50, 70, -1, 3)
    raw = render_single(Tile("m", m), GridOptions(raw=True))
    assert raw.size == (70, 50) and np.array_equal(np.asarray(raw), np.asarray(render_map(m)))


def test_single_streamed_map_is_labelled_and_raw_refuses_it() -> None:
    tile = Tile("s1 conv · x", smooth(200, 267), full_shape=(3000, 4000), vrange=(0.0, 5.0))
    image = render_single(tile)
    assert image.size[0] >= 267
    with pytest.raises(Exception, match="whole map"):
        render_single(tile, GridOptions(raw=True))


def _scales(image: Image.Image) -> list[list[object]]:
    import json

    return list(json.loads(image.info["featcli:scales"]))


def _maps_only(image: Image.Image) -> Image.Image:
    """An RGB grid (with an input picture) as a mask that :func:`tile_boxes` reads: 255 where not grey."""
    rgb = np.asarray(image).astype(int)
    grey = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    return Image.fromarray(np.where(grey, 0, 255).astype(np.uint8), "P")


def test_a_per_map_grid_with_one_colour_bar_says_the_scales_happen_to_be_equal() -> None:
    """#26: a per-map grid whose maps share one range draws one colour bar; its caption says the scales are
    per map and equal here, not "one scale for all maps" beside "--norm per-map"."""
    from featcli.enums import Norm
    from featcli.render import GridOptions
    from featcli.render.grid import scale_caption

    per_map = scale_caption(GridOptions(norm=Norm.PER_MAP), [], [], shared=True)
    assert per_map.startswith("each map its own scale, here the same for all (--norm per-map)"), per_map
    assert scale_caption(GridOptions(norm=Norm.STAGE), [], [], shared=True).startswith("one scale for all maps")
