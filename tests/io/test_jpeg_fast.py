"""The fast JPEG decode (featcli/io/jpeg.py) gives Pillow's pixels and never changes a verdict."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featcli.enums import Channels
from featcli.errors import ImageLoadError
from featcli.io import images
from featcli.io.images import LoadOptions, load_image

pytest.importorskip("simplejpeg")


def _photo(w: int, h: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(w * 7 + h)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), (x + y) % 256], axis=2)
    arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    return img.convert("L") if mode == "L" else img


VARIANTS = {
    "baseline420.jpg": (_photo(97, 61), {"quality": 85}),
    "444.jpg": (_photo(64, 48), {"quality": 95, "subsampling": 0}),
    "422.jpg": (_photo(33, 17), {"quality": 75, "subsampling": 1}),
    "progressive.jpg": (_photo(80, 50), {"quality": 90, "progressive": True}),
    "optimized.jpg": (_photo(50, 80), {"quality": 60, "optimize": True}),
    "restarts.jpg": (_photo(120, 40), {"quality": 80, "restart_marker_blocks": 2}),
    "tiny.jpg": (_photo(1, 1), {"quality": 90}),
    "gray.jpg": (_photo(45, 31, "L"), {"quality": 85}),
}


def _pillow(path: Path, channels: Channels) -> np.ndarray:
    img = Image.open(path)
    img = img.convert("L") if channels is Channels.GRAY else img.convert("RGB") if channels is Channels.RGB else img
    arr = np.asarray(img)
    return arr[:, :, None] if arr.ndim == 2 else arr


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("channels", list(Channels))
def test_pixels_equal_pillows(tmp_path: Path, name: str, channels: Channels, monkeypatch: pytest.MonkeyPatch) -> None:
    img, kw = VARIANTS[name]
    path = tmp_path / name
    img.save(path, "JPEG", **kw)
    used: list[bool] = []
    real = images.fast_decode

    def spy(*a: object) -> object:
        out = real(*a)  # type: ignore[arg-type]
        used.append(out is not None)
        return out

    monkeypatch.setattr(images, "fast_decode", spy)
    got = load_image(path, LoadOptions(channels=channels))
    np.testing.assert_array_equal(got.array, _pillow(path, channels))
    assert got.array.dtype == np.uint8 and got.value_max == 255.0
    # the fast path serves the cases it can serve exactly (RGB kept or as RGB, gray kept or as gray)
    expected = (img.mode, channels) in {("RGB", Channels.RGB), ("RGB", Channels.KEEP), ("L", Channels.GRAY),
                                        ("L", Channels.KEEP)}
    assert used == ([True] if expected else []), (used, expected)


def test_truncated_and_damaged_keep_pillows_verdict(tmp_path: Path) -> None:
    buf = io.BytesIO()
    _photo(200, 120).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    cases = {"cut.jpg": data[: len(data) * 2 // 3],
             "junk_tail.jpg": data + b"\x00garbage after the end marker",
             "flipped.jpg": data[:700] + bytes([data[700] ^ 0x5A]) + data[701:]}
    for name, blob in cases.items():
        path = tmp_path / name
        path.write_bytes(blob)
        try:
            Image.open(path).load()
            pillow_ok = True
        except Exception:  # noqa: BLE001 - any exception is Pillow's refusal
            pillow_ok = False
        try:
            got = load_image(path)
        except ImageLoadError as exc:
            assert not pillow_ok, f"{name}: featcli refused what Pillow decodes: {exc}"
            continue
        assert pillow_ok, f"{name}: featcli accepted what Pillow refuses"
        np.testing.assert_array_equal(got.array, _pillow(path, Channels.RGB))


def test_rotated_resized_and_later_frames_go_through_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    _photo(40, 20).save(path, "JPEG", exif=exif)
    monkeypatch.setattr(images, "fast_decode", lambda *a: pytest.fail("fast path used"))
    assert load_image(path).array.shape == (40, 20, 3)
    plain = tmp_path / "plain.jpg"
    _photo(40, 20).save(plain, "JPEG")
    assert load_image(plain, LoadOptions(max_side=10)).array.shape == (5, 10, 3)
