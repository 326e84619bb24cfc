"""``featcli run --html``: the page opened in headless Chromium (the distribution's package, over the DevTools pipe).

One run of a folder (two images) and one browser start for the module. The page must render with no console
errors, hold the table and every map, report on hover the value featcli computed there (its ``--save``
tensors, themselves checked against plain torch calls) to the page's display precision, draw the receptive
field on the input, enlarge a map on click, and give a screenshot. Without Chromium the tests skip, unless
``CI`` is set: CI installs it (README's test command), so there they fail.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.cdp import Browser, find_chromium

SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
SIZES = {"a": (40, 48), "b": (33, 27)}  # (H, W): maps this small are shown unshrunk, so every value is on the page


@pytest.fixture(scope="module")
def run_page(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from typer.testing import CliRunner

    from featcli.cli import app

    folder = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(7)
    (folder / "in").mkdir()
    for stem, (h, w) in SIZES.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / "in" / f"{stem}.png")
    page = folder / "page.html"
    res = CliRunner().invoke(app, ["run", str(folder / "in"), "-k", "sobel_x", "-k", "sobel_y", "relu", "--pool",
                                   "max:k=2", "--html", str(page), "--save", str(folder / "{stem}.npz"), "-q"])
    assert res.exit_code == 0, res.output
    saved = {stem: dict(np.load(folder / f"{stem}.npz")) for stem in SIZES}
    return {"folder": folder, "page": page, "saved": saved}


@pytest.fixture(scope="module")
def browser(run_page: dict[str, Any]) -> Iterator[Browser]:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium (README's test command installs the distribution's package)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it and runs these tests")
    with Browser(exe, width=1280, height=900) as b:
        b.open(str(run_page["page"]))
        assert b.eval("window.featcliReady") is True
        yield b


def test_saved_maps_are_torch(run_page: dict[str, Any]) -> None:
    """The values the page is checked against are torch's: conv (the kernel summed over RGB), relu, max pool."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(Image.open(run_page["folder"] / "in" / "a.png"), np.float32) / 255.0)
    x = x.permute(2, 0, 1)[None]
    k = torch.tensor(SOBEL_X)
    w = torch.stack([k.expand(3, 3, 3), k.T.expand(3, 3, 3)])
    s1 = F.conv2d(x, w)
    saved = run_page["saved"]["a"]
    torch.testing.assert_close(torch.from_numpy(saved["s1_conv"]), s1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(saved["s3_maxpool"]), F.max_pool2d(F.relu(s1), 2), rtol=1e-5,
                               atol=1e-5)


def test_renders_table_and_every_map(browser: Browser) -> None:
    assert browser.problems() == []
    assert browser.eval("document.querySelectorAll('section').length") == 2
    assert browser.eval("document.querySelectorAll('figure.map').length") == 2 * 3 * 2  # images x stages x maps
    shown = "[...document.images].filter(i => !i.closest('#zoom'))"  # the enlarged view's img is empty until a click
    assert browser.eval(f"{shown}.every(i => i.complete && i.naturalWidth > 0)") is True
    assert browser.eval(f"{shown}.every(i => i.src.startsWith('data:image/png'))") is True
    assert browser.eval("document.querySelectorAll('link, script[src], iframe').length") == 0
    rows = browser.eval("[...document.querySelectorAll('table.rows tbody tr')].map(r => r.innerText)")
    assert len(rows) == 6 and all("✓" in r for r in rows)
    assert "H: floor((40 + 2*0 - 1*(3-1) - 1)/1) + 1 = 38" in rows[0]
    links = browser.eval("[...document.querySelectorAll('table.rows a')].map(a => a.getAttribute('href'))")
    assert len(links) == 6
    assert browser.eval(f"{links!r}.every(h => document.querySelector(h) !== null)") is True


def _box(browser: Browser, i: int, zoomed: bool = False) -> list[float]:
    """Map ``i``'s picture on screen (scrolled into view), or the enlarged one."""
    if zoomed:
        js = "document.querySelector('#zoom img')"
    else:
        browser.eval(f"document.querySelectorAll('figure.map')[{i}].scrollIntoView({{block: 'center'}})")
        js = f"document.querySelectorAll('figure.map img')[{i}]"
    box: list[float] = browser.eval(f"(r => [r.left, r.top, r.width, r.height])({js}.getBoundingClientRect())")
    return box


def _hover(browser: Browser, i: int, r: int, c: int, h: int, w: int, zoomed: bool = False) -> str:
    left, top, width, height = _box(browser, i, zoomed)
    browser.hover(left + (c + 0.5) * width / w, top + (r + 0.5) * height / h)
    sel = "#zoom .val" if zoomed else None
    text: str = browser.eval(f"document.querySelector('{sel}').textContent" if sel else
                             f"document.querySelectorAll('figure.map .val')[{i}].textContent")
    return text


def _close(shown: str, true: float) -> bool:
    """``shown`` is ``true`` to the page's precision: float16 (11 significant bits), then 3 significant digits."""
    v = float(shown)
    if true == 0:
        return v == 0
    digit = 10.0 ** (math.floor(math.log10(abs(true))) - 2)
    return abs(v - true) <= abs(true) * 2.0**-11 + 0.5 * digit + 1e-12


def test_hover_reports_the_computed_value(browser: Browser, run_page: dict[str, Any]) -> None:
    figures = browser.eval("[...document.querySelectorAll('figure.map')].map(f => [f.dataset.label, +f.dataset.h, "
                           "+f.dataset.w, f.closest('section').querySelector('h2').textContent])")
    rng = np.random.default_rng(3)
    for i, (label, h, w, path) in enumerate(figures):
        stem = Path(path).stem
        stage, op, axis = re.match(r"s(\d) (\w+) · sobel_(\w)", label).groups()  # type: ignore[union-attr]
        maps = run_page["saved"][stem][f"s{stage}_{op}"][0, "xy".index(axis)]
        assert maps.shape == (h, w)
        for r, c in [(int(rng.integers(h)), int(rng.integers(w))), (h - 1, w - 1)]:
            text = _hover(browser, i, r, c, h, w)
            m = re.search(r"\((\d+), (\d+)\) = (\S+)", text)
            assert m is not None, text
            assert (int(m[1]), int(m[2])) == (r, c), text
            assert _close(m[3], float(maps[r, c])), (text, float(maps[r, c]))


def test_hover_draws_the_receptive_field(browser: Browser) -> None:
    """s3 (max pool k=2 after a 3x3 conv) at (5, 7) sees input rows 10..13 and columns 14..17 of image a."""
    i = 4  # image a, stage 3, sobel_x
    assert browser.eval(f"document.querySelectorAll('figure.map')[{i}].dataset.label") == "s3 maxpool · sobel_x"
    text = _hover(browser, i, 5, 7, 19, 23)
    assert "sees input rows 10–13, cols 14–17" in text
    style = browser.eval("(s => [s.display, s.top, s.left, s.height, s.width])(document.querySelector('#i0-input .rf')"
                         ".style)")
    assert style[0] == "block"
    assert [float(v.rstrip("%")) for v in style[1:]] == pytest.approx([100 * 10 / 40, 100 * 14 / 48, 100 * 4 / 40,
                                                                        100 * 4 / 48], abs=1e-3)


def test_click_enlarges_and_screenshot(browser: Browser, run_page: dict[str, Any], tmp_path: Path) -> None:
    left, top, width, height = _box(browser, 0)
    browser.click(left + width / 2, top + height / 2)
    assert browser.eval("document.getElementById('zoom').classList.contains('on')") is True
    assert browser.eval("document.querySelector('#zoom img').getBoundingClientRect().width") > 2 * width
    text = _hover(browser, 0, 0, 0, 38, 46, zoomed=True)
    assert _close(re.search(r"= (\S+)", text)[1], float(run_page["saved"]["a"]["s1_conv"][0, 0, 0, 0]))  # type: ignore[index]
    shot = tmp_path / "page.png"
    browser.screenshot(str(shot))
    browser.eval("document.getElementById('zoom').classList.remove('on')")
    pic = np.asarray(Image.open(shot).convert("RGB"))
    assert pic.shape == (900, 1280, 3) and pic.std() > 10
    assert browser.problems() == []
