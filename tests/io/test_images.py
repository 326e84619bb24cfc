"""Image loading: every mode, EXIF, frames, stdin, bad input, and the exact HWC -> NCHW conversion."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from featcli.enums import Alpha, Channels, Scale
from featcli.errors import ImageLoadError, UsageError
from featcli.io.images import LoadOptions, array_to_tensor, load_image, probe, to_tensor

RNG = np.random.default_rng(0)


def _rgb(h: int = 6, w: int = 7) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(tmp_path: Path, img: Image.Image, name: str, **kw: object) -> Path:
    p = tmp_path / name
    img.save(p, **kw)
    return p


# --- modes ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "keep_channels"),
    [("1", 1), ("L", 1), ("LA", 1), ("P", 3), ("RGB", 3), ("RGBA", 3), ("CMYK", 4), ("I;16", 1), ("I", 1), ("F", 1)],
)
@pytest.mark.parametrize("channels", [*Channels, None])
def test_every_mode_loads_with_predicted_shape(
    tmp_path: Path, mode: str, keep_channels: int, channels: Channels | None
) -> None:
    img = Image.fromarray(_rgb()).convert(mode)
    ext = {"CMYK": "tif", "I;16": "png", "I": "tif", "F": "tif"}.get(mode, "png")
    path = _save(tmp_path, img, f"a.{ext}")
    opts = LoadOptions(channels=channels)
    loaded = load_image(path, opts)
    # the default (None): a gray source stays one channel, any other becomes RGB
    expect_c = {Channels.RGB: 3, Channels.GRAY: 1, Channels.KEEP: keep_channels,
                None: 1 if keep_channels == 1 else 3}[channels]
    assert loaded.array.shape == (6, 7, expect_c)
    assert probe(path, opts).tensor_shape == (1, expect_c, 6, 7)
    t = to_tensor(loaded)
    assert t.shape == (1, expect_c, 6, 7) and t.dtype == torch.float32


def test_sixteen_bit_scaled_by_65535_not_clipped(tmp_path: Path) -> None:
    a = np.array([[0, 1000, 65535]], dtype=np.uint16)
    path = _save(tmp_path, Image.fromarray(a), "d.png")
    loaded = load_image(path, LoadOptions(channels=Channels.KEEP))
    assert loaded.array.dtype == np.uint16 and loaded.value_max == 65535
    t = to_tensor(loaded)
    torch.testing.assert_close(t[0, 0, 0], torch.tensor([0.0, 1000 / 65535, 1.0]))
    t255 = to_tensor(loaded, scale=Scale.BYTE)
    torch.testing.assert_close(t255[0, 0, 0], torch.tensor([0.0, 1000 / 65535 * 255, 255.0]))


def test_float_mode_taken_as_is(tmp_path: Path) -> None:
    a = np.array([[-0.5, 0.25, 2.0]], dtype=np.float32)
    path = _save(tmp_path, Image.fromarray(a), "f.tif")
    t = to_tensor(load_image(path, LoadOptions(channels=Channels.KEEP)))
    torch.testing.assert_close(t[0, 0, 0], torch.from_numpy(a[0]))


def test_bilevel_is_0_or_255(tmp_path: Path) -> None:
    a = np.array([[0, 255, 0, 255]], dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(a).convert("1"), "b.png")
    loaded = load_image(path, LoadOptions(channels=Channels.KEEP))
    np.testing.assert_array_equal(loaded.array[:, :, 0], a)


def test_gray_is_itu_601_luma(tmp_path: Path) -> None:
    a = _rgb()
    path = _save(tmp_path, Image.fromarray(a), "g.png")
    loaded = load_image(path, LoadOptions(channels=Channels.GRAY))
    expect = np.asarray(Image.fromarray(a).convert("L"))
    np.testing.assert_array_equal(loaded.array[:, :, 0], expect)
    ref = (a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114)
    assert np.abs(loaded.array[:, :, 0] - ref).max() <= 1.0


# --- palette and alpha ------------------------------------------------------------------------------------


def test_palette_with_transparency(tmp_path: Path) -> None:
    img = Image.new("P", (4, 3), 0)
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.info["transparency"] = 0
    path = _save(tmp_path, img, "p.png", transparency=0)
    keep = LoadOptions(alpha=Alpha.KEEP)
    assert probe(path, keep).tensor_shape == (1, 4, 3, 4)
    loaded = load_image(path, keep)
    assert loaded.array.shape == (3, 4, 4)
    assert loaded.array[1, 1].tolist() == [0, 255, 0, 255]
    assert loaded.array[0, 0, 3] == 0
    assert load_image(path).array.shape == (3, 4, 3)


def test_alpha_drop_keep_composite(tmp_path: Path) -> None:
    a = np.zeros((2, 2, 4), np.uint8)
    a[0, 0] = (200, 100, 50, 255)
    a[0, 1] = (200, 100, 50, 0)
    a[1, 0] = (200, 100, 50, 128)
    path = _save(tmp_path, Image.fromarray(a), "a.png")
    dropped = load_image(path).array
    assert dropped.shape == (2, 2, 3) and dropped[0, 1].tolist() == [200, 100, 50]
    kept = load_image(path, LoadOptions(alpha=Alpha.KEEP))
    assert kept.array.shape == (2, 2, 4) and kept.channel_names == ("R", "G", "B", "A")
    comp = load_image(path, LoadOptions(alpha=Alpha.COMPOSITE, background="black")).array
    assert comp[0, 0].tolist() == [200, 100, 50]
    assert comp[0, 1].tolist() == [0, 0, 0]
    assert abs(int(comp[1, 0, 0]) - 100) <= 1
    white = load_image(path, LoadOptions(alpha=Alpha.COMPOSITE)).array
    assert white[0, 1].tolist() == [255, 255, 255]


def test_la_keep_gives_two_channels(tmp_path: Path) -> None:
    img = Image.new("LA", (3, 3), (77, 200))
    path = _save(tmp_path, img, "la.png")
    loaded = load_image(path, LoadOptions(channels=Channels.KEEP, alpha=Alpha.KEEP))
    assert loaded.array.shape == (3, 3, 2)


def test_bad_background_is_usage_error(tmp_path: Path) -> None:
    path = _save(tmp_path, Image.new("RGBA", (2, 2)), "a.png")
    with pytest.raises(UsageError, match="not a colour"):
        load_image(path, LoadOptions(alpha=Alpha.COMPOSITE, background="notacolour"))


# --- EXIF, frames, formats, resize ---------------------------------------------------------------------


@pytest.mark.parametrize(("orientation", "shape"), [(1, (4, 6)), (3, (4, 6)), (6, (6, 4)), (8, (6, 4))])
def test_exif_orientation_applied(tmp_path: Path, orientation: int, shape: tuple[int, int]) -> None:
    a = np.zeros((4, 6, 3), np.uint8)
    a[0, 0] = 255  # top-left marker
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, Image.fromarray(a), "e.png", exif=exif)
    loaded = load_image(path)
    assert loaded.array.shape[:2] == shape
    assert loaded.header.orientation == orientation
    assert probe(path).tensor_shape[2:] == shape
    expect = np.asarray(Image.fromarray(a).transpose(
        {1: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270,
         8: Image.Transpose.ROTATE_90}[orientation]))
    if orientation == 1:
        expect = a
    np.testing.assert_array_equal(loaded.array, expect)


def test_multi_frame_first_and_chosen(tmp_path: Path) -> None:
    frames = [Image.new("L", (5, 5), v) for v in (10, 200)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    first = load_image(path, LoadOptions(channels=Channels.GRAY))
    second = load_image(path, LoadOptions(channels=Channels.GRAY, frame=1))
    assert first.header.n_frames == 2
    assert int(first.array.mean()) != int(second.array.mean())
    with pytest.raises(ImageLoadError, match="out of range: the file has 2 frame"):
        load_image(path, LoadOptions(frame=5))


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", "jpg"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif"),
                                           ("GIF", "gif"), ("PNG", "png")])
def test_formats(tmp_path: Path, fmt: str, ext: str) -> None:
    path = _save(tmp_path, Image.fromarray(_rgb(16, 20)), f"x.{ext}", format=fmt)
    loaded = load_image(path)
    assert loaded.array.shape == (16, 20, 3) and loaded.header.format == fmt


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_max_side_resize(tmp_path: Path, ext: str) -> None:
    path = _save(tmp_path, Image.fromarray(RNG.integers(0, 255, (300, 400, 3), dtype=np.uint8)), f"big.{ext}")
    opts = LoadOptions(max_side=100)
    assert probe(path, opts).tensor_shape == (1, 3, 75, 100)
    assert load_image(path, opts).array.shape == (75, 100, 3)


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    buf = io.BytesIO()
    a = _rgb()
    Image.fromarray(a).save(buf, format="PNG")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(buf.getvalue())))
    loaded = load_image("-")
    assert loaded.path == "<stdin>"
    np.testing.assert_array_equal(loaded.array, a)


# --- the conversion ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", list(Scale))
def test_conversion_matches_tutorial_expression(scale: Scale) -> None:
    img = _rgb(9, 11)
    expect = torch.tensor(img).permute(2, 0, 1).unsqueeze(0).float()
    if scale is Scale.UNIT:
        expect = expect / 255
    got = array_to_tensor(img, scale=scale)
    assert got.shape == expect.shape == (1, 3, 9, 11)
    assert got.dtype == torch.float32
    assert torch.equal(got, expect)  # bit-exact, not just close
    assert got.is_contiguous(memory_format=torch.channels_last)  # the permuted view's layout, no copy


def test_conversion_copies_once_and_leaves_array_alone() -> None:
    img = _rgb(4, 4)
    before = img.copy()
    t = array_to_tensor(img)
    t.fill_(0)
    np.testing.assert_array_equal(img, before)


# --- bad input ----------------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="file is empty"):
        load_image(tmp_path / "e.png")


def test_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "t.png").write_text("hello, I am text\n" * 10)
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(tmp_path / "t.png")


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated(tmp_path: Path, fmt: str, ext: str) -> None:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(buf, format=fmt)
    data = buf.getvalue()
    (tmp_path / f"t.{ext}").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated|cannot decode"):
        load_image(tmp_path / f"t.{ext}")


def test_decompression_bomb_and_override(tmp_path: Path) -> None:
    path = _save(tmp_path, Image.new("L", (100, 100)), "big.png")
    with pytest.raises(ImageLoadError, match="decompression-bomb limit of 5,000 pixels.*--max-pixels"):
        load_image(path, LoadOptions(max_pixels=5000))
    with pytest.raises(ImageLoadError, match="decompression-bomb"):
        probe(path, LoadOptions(max_pixels=5000))
    assert load_image(path, LoadOptions(max_pixels=0)).array.shape == (100, 100, 1)
    assert load_image(path, LoadOptions(max_pixels=20_000)).array.shape == (100, 100, 1)


def test_zero_size_image(tmp_path: Path) -> None:
    # A PNG header claiming 0x0: Pillow refuses or opens it; either way one ImageLoadError.
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")
    (tmp_path / "z.png").write_bytes(png)
    with pytest.raises(ImageLoadError):
        load_image(tmp_path / "z.png")


def test_unsupported_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path, Image.new("L", (3, 3)), "m.png")
    real_open = Image.open

    def fake_open(*a: object, **k: object) -> Image.Image:
        img = real_open(*a, **k)  # type: ignore[arg-type]
        img._mode = "BGR;24"  # a mode featcli does not handle
        return img

    monkeypatch.setattr(Image, "open", fake_open)
    with pytest.raises(ImageLoadError, match="unsupported image mode 'BGR;24'"):
        load_image(path)


def test_bad_options() -> None:
    with pytest.raises(UsageError):
        LoadOptions(max_side=0)
    with pytest.raises(UsageError):
        LoadOptions(frame=-1)
