"""The ``--html`` page without a browser: the builder's budget, the values it embeds, the refusals, a network's page.

(The page in a real browser: ``tests/run/test_html_page.py``.)
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from featcli.cli import app
from featcli.render import GridOptions, Tile
from featcli.render.page import Page, Section
from featcli.render.page_maps import encode_values

NETS = Path(__file__).parents[1] / "models" / "nets.py"


def test_values_keep_float16_precision_at_any_magnitude() -> None:
    """Scaled by a power of two: no overflow past float16's 65504, 11 significant bits for values down to
    2**-14 of the map's largest, and an absolute error under 2**-24 of it below that."""
    a = np.array([[3e6, -1e3, 0.0, np.nan], [7.25, -123456.0, np.inf, -1e-3]], np.float32)
    text, e = encode_values(a)
    back = np.frombuffer(base64.b64decode(text), "<f2").astype(np.float64).reshape(a.shape) * 2.0**e
    big = np.isfinite(a) & (np.abs(a) >= 3e6 * 2.0**-14)
    np.testing.assert_allclose(back[big], a[big], rtol=2.0**-11)
    assert abs(back[1, 3] - -1e-3) <= 3e6 * 2.0**-24
    assert np.isnan(back[0, 3]) and back[1, 2] == np.inf and back[0, 2] == 0
    text, e = encode_values(np.array([[1e-7, -3e-9]], np.float32))  # a tiny map keeps its digits too
    back = np.frombuffer(base64.b64decode(text), "<f2").astype(np.float64) * 2.0**e
    np.testing.assert_allclose(back, [1e-7, -3e-9], rtol=2.0**-11)


def test_budget_leaves_maps_out_and_says_which() -> None:
    rng = np.random.default_rng(0)
    page = Page("t", budget=120_000)
    for n in range(3):
        sec = Section(f"image {n}", anchor=f"i{n}")
        sec.table(["#"], [["1"]])
        sec.input_picture(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        tiles = [Tile(f"s1 conv · c{c}", rng.standard_normal((64, 64)).astype(np.float32), stage="s1_conv")
                 for c in range(4)]
        sec.maps(tiles, GridOptions(), titles={"s1_conv": "s1 conv"})
        page.add(sec)
    text = page.html()
    assert page.left_out and all(w.endswith("s1 conv (4 maps)") for w in page.left_out)
    assert len(page.left_out) < 3 and text.count("<figure class=\"map\"") == 4 * (3 - len(page.left_out))
    assert "Left out to keep this page under its size budget (0.12 MB)" in text
    assert len(text.encode()) <= 120_000 and text.count("<table") == 3  # tables are always kept
    # an input picture only where its maps are: hovering a map draws on it
    assert text.count('class="inputbox"') == 3 - len(page.left_out)


def _run(tmp_path: Path, *args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["run", *args])
    return res.exit_code, res.output


def test_refusals(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_text("mine")
    code, out = _run(tmp_path, "sample:step_edge", "-k", "sobel_x", "--html", str(page))
    assert code == 1 and "already exists (use --force to overwrite)" in out and page.read_text() == "mine"
    code, out = _run(tmp_path, "sample:step_edge", "-k", "sobel_x", "--html", str(tmp_path / "p.png"))
    assert code == 2 and "give a name ending in .html" in out
    code, out = _run(tmp_path, "sample:step_edge", "sample:gradient", "-k", "sobel_x", "--processes", "2",
                     "--html", str(tmp_path / "q.html"))
    assert code == 2 and "not with --processes or --ray" in out
    assert "Traceback" not in out and not (tmp_path / "q.html").exists()


def test_a_failed_image_is_a_line_of_the_page(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    from PIL import Image

    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / "in" / "good.png")
    code, out = _run(tmp_path, str(tmp_path / "in"), "-k", "sobel_x", "--html", str(tmp_path / "p.html"), "-q")
    assert code == 1
    text = (tmp_path / "p.html").read_text()
    assert text.count("<section") == 2 and "failed: " in text and text.count('<figure class="map"') == 1


def test_network_page_has_every_layer_and_the_kept_maps(tmp_path: Path) -> None:
    page = tmp_path / "net.html"
    code, out = _run(tmp_path, "sample:step_edge", "--model", f"{NETS}:PNet", "--layers", "conv1,conv2", "--html",
                     str(page), "--json")
    assert code == 0, out
    record = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    text = page.read_text()
    rows = re.findall(r"<tr><td>(?:<a href=\"#([^\"]+)\">)?(\d+)", text)
    assert [int(n) for _, n in rows] == [layer["index"] for layer in record["layers"]]
    linked = [a for a, _ in rows if a]
    assert len(linked) == 2 and all(f'id="{a}"' in text for a in linked)
    assert text.count('<figure class="map"') == 10 + 16  # conv1: 10 channels, conv2: 16
    assert "conv:out=10,k=3" in text  # the formula engine's stage for conv1
    # receptive fields (top0, left0, jump_y, jump_x, h, w): conv1 3x3; conv2 after a 2x2 stride-2 pool: 3 + 1 + 2*2
    assert text.count('data-rf="0,0,1,1,3,3"') == 10 and text.count('data-rf="0,0,2,2,8,8"') == 16


def _figures(text: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'data-(\w+)="([^"]*)"', f)) | {"src": re.search(r'src="data:image/png;base64,([^"]+)"',
                                                                               f)[1]}  # type: ignore[index]
            for f in re.findall(r'<figure class="map".*?</figure>', text, re.S)]


def test_maps_have_the_png_colours_and_the_grids_display_values() -> None:
    """A map's picture is render_map's (the PNG's colours); a shrunk map's values are the grids' reduction."""
    import io

    from PIL import Image

    from featcli.render import render_map
    from featcli.render.maps import prepare_all

    rng = np.random.default_rng(1)
    small = rng.standard_normal((30, 40)).astype(np.float32)
    big = np.abs(rng.standard_normal((300, 500))).astype(np.float32)
    opts = GridOptions(tile_px=64)
    tiles = [Tile("a", small, stage="s1"), Tile("b", big, stage="s2")]
    sec = Section("t", anchor="t").maps(tiles, opts)
    a, b = _figures("".join(bl.html for bl in sec.blocks))
    pic = np.asarray(Image.open(io.BytesIO(base64.b64decode(a["src"]))).convert("RGB"))
    assert np.array_equal(pic, np.asarray(render_map(small, opts).convert("RGB")))
    assert (b["w"], b["h"], b["fw"], b["fh"]) == ("64", "38", "500", "300")
    values = np.frombuffer(base64.b64decode(b["v"]), "<f2").astype(np.float64).reshape(38, 64) * 2.0 ** int(b["e"])
    np.testing.assert_allclose(values, prepare_all(tiles[1:], 64, opts)[0].small, rtol=2.0**-11)
