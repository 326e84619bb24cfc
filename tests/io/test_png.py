"""#18: featcli's own PNG writer (ISA-L or zlib, in row bands) gives back the pixels, palette and text."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image

from featcli.io import png


def _image(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 6, (size[1], size[0]), dtype=np.uint8) * 40  # runs and noise, like a map
    img = Image.fromarray(a)
    if mode == "P":
        img = img.convert("P")
        img.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    return img


def _round_trip(img: Image.Image, level: int = 1) -> Image.Image:
    img.info["featcli:cmap"] = "viridis"
    buf = io.BytesIO()
    png.png_writer(img, "x.png", metadata={"featcli:input": "naïve ☃.jpg", "k": "v"}, compress_level=level)(buf)
    buf.seek(0)
    back = Image.open(buf)
    back.load()
    return back


@pytest.mark.parametrize("isal", [True, False])
@pytest.mark.parametrize("mode", ["P", "L"])
@pytest.mark.parametrize("size", [(1, 1), (37, 5), (1300, 900)])  # the last: several bands, threads on zlib
def test_writer_round_trips_pixels_palette_and_text(monkeypatch: pytest.MonkeyPatch, isal: bool, mode: str,
                                                    size: tuple[int, int]) -> None:
    if isal:
        pytest.importorskip("isal")
    else:
        monkeypatch.setattr(png, "_isal", lambda: None)
    monkeypatch.setattr(png, "_BAND_BYTES", 1 << 16)  # many bands even on small pictures
    img = _image(mode, size)
    back = _round_trip(img)
    assert back.mode == mode and back.size == size
    np.testing.assert_array_equal(np.asarray(back), np.asarray(img))
    if mode == "P":
        assert back.getpalette() == img.getpalette()
    assert back.text["featcli:input"] == "naïve ☃.jpg" and back.text["k"] == "v"
    assert back.text["featcli:cmap"] == "viridis" and back.text["Software"].startswith("featcli ")


@pytest.mark.parametrize("level", [0, 6, 9])
def test_other_levels_and_modes_still_go_through_pillow(level: int) -> None:
    img = _image("P", (64, 48))
    np.testing.assert_array_equal(np.asarray(_round_trip(img, level)), np.asarray(img))
    rgb = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    np.testing.assert_array_equal(np.asarray(_round_trip(rgb)), np.asarray(rgb))


def test_adler32_combine_equals_zlib() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.bytes(100_003), rng.bytes(70_001)
    assert png._adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
    assert png._adler32_combine(1, zlib.adler32(b), len(b)) == zlib.adler32(b)


def test_a_file_name_that_is_not_utf8_is_written_with_a_replacement_character() -> None:
    buf = io.BytesIO()
    png.png_writer(_image("P", (8, 8)), "x.png", metadata={"featcli:input": "bad\udcff.png"})(buf)
    buf.seek(0)
    assert Image.open(buf).text["featcli:input"] == "bad\ufffd.png"
