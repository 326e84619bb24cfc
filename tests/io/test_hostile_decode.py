"""Hostile input (issue #17): featcli accepts a file exactly when Pillow decodes it, and says why not quietly.

The corpus (``tests/io/hostile.py``) is built from the bundled samples in ``tmp_path``. For every file,
featcli's verdict (``load_image`` and ``probe(verify=True)``) must equal Pillow's full-decode verdict
(``Image.open(p).load()``, default configuration, frame 0), the pixels must equal Pillow's where both
succeed, and every refusal is one :class:`ImageLoadError` line naming the file. Decoder warnings and what
C libraries write to fd 2 must never reach stderr, from one thread or four.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import struct
import subprocess
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from featcli.enums import Channels
from featcli.errors import ImageLoadError
from featcli.io.decode import failure_reason
from featcli.io.describe import describe
from featcli.io.images import ImageHeader, LoadedImage, LoadOptions, load_image, probe
from featcli.io.stderr import CAPTURE


def _hostile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("featcli_tests_hostile", Path(__file__).with_name("hostile.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hostile = _hostile()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    paths: list[Path] = hostile.build_corpus(tmp_path_factory.mktemp("hostile"))
    return paths


def pillow_image(path: Path) -> Image.Image | None:
    """Pillow's own verdict: the loaded frame 0, or None when a fresh full decode raises."""
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with warnings.catch_warnings():  # single-threaded here; only Pillow's chatter is silenced
        warnings.simplefilter("ignore")
        try:
            img = Image.open(path)
            img.load()
        except Exception:  # noqa: BLE001 - any exception is a refusal
            return None
    return img


def featcli_verdict(path: Path, **kw: object) -> LoadedImage | ImageLoadError:
    try:
        return load_image(path, LoadOptions(**kw))  # type: ignore[arg-type]
    except ImageLoadError as exc:
        return exc


def assert_good_refusal(exc: ImageLoadError, path: Path) -> None:
    text = str(exc)
    assert text.startswith(f"{path}: "), text
    assert "\n" not in text and "\r" not in text, text
    assert "internal error" not in text and len(exc.message) <= 480, text
    assert not exc.message.rstrip(")").endswith(("Error", "Exception")), text
    assert " " in exc.message, text  # a sentence, never a class name alone


def _expected_pixels(img: Image.Image) -> np.ndarray | None:
    if img.mode.startswith("I;16"):
        return np.asarray(img).astype(np.uint16)[:, :, None]
    if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
        return None
    if img.mode in ("1", "L", "LA"):  # the default keeps a gray image's one channel
        return np.asarray(ImageOps.exif_transpose(img).convert("L"))[:, :, None]
    return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))


def test_verdicts_equal_pillows_file_by_file(corpus: list[Path]) -> None:
    disagree, compared, refused = [], 0, 0
    for path in corpus:
        ref = pillow_image(path)
        refused += ref is None
        got = featcli_verdict(path)
        header: ImageHeader | ImageLoadError
        try:
            header = probe(path, verify=True)
        except ImageLoadError as exc:
            header = exc
        if (ref is None) != isinstance(got, ImageLoadError) or isinstance(header, ImageLoadError) != (ref is None):
            disagree.append(f"{path.name}: pillow {'refuses' if ref is None else 'loads'}, featcli {got}, "
                            f"probe(verify) {header}")
            continue
        if isinstance(got, ImageLoadError):
            assert_good_refusal(got, path)
            assert str(header) == str(got)  # same reason from both entry points
            continue
        assert ref is not None and isinstance(header, ImageHeader)
        h, w, c = got.array.shape
        assert header.tensor_shape == (1, c, h, w)
        expect = _expected_pixels(ref)
        if expect is not None:
            if ref.mode.startswith("I;16"):
                got = load_image(path, LoadOptions(channels=Channels.KEEP))
            np.testing.assert_array_equal(got.array, expect, err_msg=path.name)
            compared += 1
    assert not disagree, "\n".join(disagree)
    # The corpus must keep testing something: many refusals, many loads compared pixel for pixel.
    assert len(corpus) > 300 and refused > 150 and compared > 100, (len(corpus), refused, compared)


def test_probe_without_verify_never_raises_anything_but_image_load_error(corpus: list[Path]) -> None:
    for path in corpus:
        try:
            header = probe(path)
        except ImageLoadError as exc:
            assert_good_refusal(exc, path)
        else:
            assert header.tensor_shape[0] == 1


def test_the_issue_case_late_exif_png_with_broken_pixels(tmp_path: Path) -> None:
    """The cause found in #17: getexif() decoded the PNG, swallowed the error, and load() then said nothing."""
    img = Image.open(ROOT / "samples" / "shapes.png").convert("RGB")
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = bytearray(hostile.with_late_exif(buf.getvalue(), 6))
    (pos, length, _), = [c for c in hostile.png_chunks(bytes(data)) if c[2] == b"IDAT"][:1]
    data[pos + 8 + length // 2] ^= 0x10
    path = tmp_path / "late.png"
    path.write_bytes(bytes(data))
    assert pillow_image(path) is None
    for call in (lambda: load_image(path), lambda: probe(path), lambda: probe(path, verify=True),
                 lambda: describe(path, LoadOptions())):
        with pytest.raises(ImageLoadError, match=r"corrupt or truncated image data: .*data stream"):
            call()
    good = tmp_path / "good.png"
    good.write_bytes(hostile.with_late_exif(buf.getvalue(), 6))
    assert probe(good).orientation == 6 and probe(good).tensor_shape == (1, 3, 320, 240)
    assert load_image(good).array.shape == (320, 240, 3)


def test_probe_reads_no_pixels_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    real = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        loads.append(self.format or "")
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    for name in ("shapes.png", "noise.png", "photo.jpg"):
        probe(ROOT / "samples" / name)
    assert loads == []
    probe(ROOT / "samples" / "shapes.png", verify=True)
    assert loads == ["PNG"]


def test_max_side_still_decodes_jpeg_at_draft_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import JpegImagePlugin

    asked: list[tuple[int, int]] = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        asked.append(size or (0, 0))
        return real(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    loaded = load_image(ROOT / "samples" / "photo.jpg", LoadOptions(max_side=80))
    assert asked == [(80, 60)] and loaded.array.shape == (60, 80, 3)


@pytest.mark.parametrize(
    "exc",
    [OSError("broken data stream when reading image file"), OSError("-2"), OSError("image file is truncated"),
     SyntaxError("broken PNG file"), ValueError("tile cannot extend\noutside image"),
     TypeError("function takes at most 3 arguments (4 given)"), TypeError(), EOFError(),
     struct.error("unpack requires a buffer of 4 bytes"), IndexError("index out of range"), KeyError(42),
     NotImplementedError(), MemoryError(), ZeroDivisionError("division by zero"), RuntimeError("odd")],
    ids=lambda e: type(e).__name__,
)
def test_every_decoder_exception_has_a_short_reason(exc: BaseException) -> None:
    reason = failure_reason(exc)
    assert "\n" not in reason and "internal error" not in reason and " " in reason
    assert reason != type(exc).__name__ and len(reason) < 200


def test_bomb_keeps_the_max_pixels_message(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(path)
    for opts in (LoadOptions(max_pixels=1000), LoadOptions(max_pixels=40_000)):  # Pillow errors over 2x
        with pytest.raises(ImageLoadError, match="decompression-bomb limit .* --max-pixels N"):
            load_image(path, opts)


# --- warnings and fd 2 ---------------------------------------------------------------------------------------


def test_no_decoder_warning_escapes_even_with_always(corpus: list[Path]) -> None:
    tiffs = [p for p in corpus if p.suffix == ".tif"]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for path in tiffs:
            featcli_verdict(path)
    assert [str(w.message) for w in seen] == []


_SUBPROCESS = """
import json, sys
from pathlib import Path
from featcli.errors import ImageLoadError
from featcli.io.images import load_image
from featcli.io.stderr import protect_python_stderr
protect_python_stderr()
protect_python_stderr()  # idempotent
out = {}
for p in sorted(Path(sys.argv[1]).iterdir()):
    try:
        load_image(p)
        out[p.name] = None
    except ImageLoadError as exc:
        out[p.name] = str(exc)
print(json.dumps(out))
print("featcli's own message", file=sys.stderr)
"""


def test_subprocess_stderr_is_clean_and_libtiff_text_is_in_the_reason(corpus: list[Path]) -> None:
    folder = corpus[0].parent
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "always"}
    proc = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(folder)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "featcli's own message\n"  # no libtiff/libjpeg text, no warnings: only ours
    reasons = json.loads(proc.stdout)
    assert len(reasons) == len(corpus)
    past_eof = reasons["tiff_lzw_strip_past_eof.tif"]
    assert "(libtiff: TIFFFillStrip: Read error on strip" in past_eof, past_eof
    assert sum("(libtiff: " in (r or "") for r in reasons.values()) >= 20
    assert all(r is None or "libtiff" not in r for name, r in reasons.items() if not name.endswith(".tif"))


_LIBRARY_TEXT = re.compile(r" \((libtiff|libjpeg|openjpeg|libwebp): .*\)$")


def test_four_threads_decode_good_and_bad_files_and_fd2_comes_back(corpus: list[Path]) -> None:
    picks = [p for p in corpus if p.suffix in (".tif", ".jpg", ".png") and ("intact" in p.name or "strip" in p.name
                                                                              or "entropy" in p.name)]
    alone = {p: featcli_verdict(p) for p in picks}
    assert any(isinstance(v, ImageLoadError) for v in alone.values())
    assert any(not isinstance(v, ImageLoadError) for v in alone.values())
    before = os.fstat(2)
    barrier = threading.Barrier(4)

    def work(k: int) -> list[tuple[Path, LoadedImage | ImageLoadError]]:
        barrier.wait()
        return [(p, featcli_verdict(p)) for p in picks[k::4] + picks]

    with ThreadPoolExecutor(4) as pool:
        results = [r for rs in pool.map(work, range(4)) for r in rs]
    for path, got in results:
        expect = alone[path]
        assert isinstance(got, ImageLoadError) == isinstance(expect, ImageLoadError), path.name
        if isinstance(got, ImageLoadError):
            # Captured library text may include another thread's lines; the reason itself is the same.
            assert _LIBRARY_TEXT.sub("", str(got)) == _LIBRARY_TEXT.sub("", str(expect))
        else:
            assert isinstance(got, LoadedImage) and isinstance(expect, LoadedImage)
            np.testing.assert_array_equal(got.array, expect.array)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert CAPTURE.depth == 0 and CAPTURE.saved is None


# --- small images and odd names ------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (2, 1), (1, 3), (2, 2)])
def test_tiny_images_load(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", size, (10, 20, 30)).save(path)
    w, h = size
    assert load_image(path).array.shape == (h, w, 3)
    assert probe(path, verify=True).tensor_shape == (1, 3, h, w)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file names are bytes")
def test_non_utf8_file_names(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9-\xff.png")  # Latin-1 bytes: surrogate escapes in the str
    good = tmp_path / name
    Image.new("L", (4, 3)).save(good, format="PNG")
    loaded = load_image(good)
    assert loaded.array.shape == (3, 4, 1)
    assert loaded.path.endswith("caf\ufffd-\ufffd.png") and loaded.path.encode("utf-8")
    bad = tmp_path / os.fsdecode(b"bad-\xff.png")
    bad.write_bytes(good.read_bytes()[:40])
    for target, pattern in ((bad, "truncated|corrupt"), (tmp_path / os.fsdecode(b"gone-\xfe.png"), "no such file")):
        with pytest.raises(ImageLoadError, match=pattern) as info:
            load_image(target)
        text = str(info.value)
        text.encode("utf-8")  # printable: no lone surrogates
        assert "\ufffd" in text and "\n" not in text
    for odd in ("nul\0.png", "two\nlines.png"):
        with pytest.raises(ImageLoadError, match="no such file") as info:
            load_image(str(tmp_path / odd))
        assert "\n" not in str(info.value) and "\0" not in str(info.value)
    two = tmp_path / "two\nlines.png"
    two.write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match=r"two\\x0alines\.png: not an image"):
        load_image(two)


@pytest.mark.slow
def test_larger_corpus_verdicts(tmp_path: Path) -> None:
    disagree = []
    for path in hostile.build_corpus(tmp_path, seed=1017, scale=4, truncations_per_file=20):
        ref = pillow_image(path)
        got = featcli_verdict(path)
        if (ref is None) != isinstance(got, ImageLoadError):
            disagree.append(f"{path.name}: {got}")
        elif isinstance(got, ImageLoadError):
            assert_good_refusal(got, path)
    assert not disagree, "\n".join(disagree)


def _tiff_with_unreadable_frame_table(path: Path) -> Path:
    """A 2-page TIFF whose first IFD's next-IFD offset points past the end of the file: Pillow's ``n_frames``
    raises, while ``load()`` decodes frame 0 whole (as in two go-fuzz TIFFs of issue #23)."""
    first = Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    buf = __import__("io").BytesIO()
    first.save(buf, "TIFF", save_all=True, append_images=[Image.new("RGB", (4, 4))])
    data = bytearray(buf.getvalue())
    (ifd,) = struct.unpack("<I", data[4:8])
    (entries,) = struct.unpack("<H", data[ifd:ifd + 2])
    data[ifd + 2 + 12 * entries:ifd + 6 + 12 * entries] = struct.pack("<I", len(data) + 1000)
    path.write_bytes(bytes(data))
    return path


def _psd_with_unreadable_layer_table(path: Path) -> Path:
    """An RGB PSD whose layer block claims 7 layers in 40 bytes of 0xff: ``n_frames`` (the layer count)
    raises, while ``load()`` decodes the merged image (frame 0) whole (as in a go-fuzz PSD of issue #23)."""
    h, w = 4, 5
    layers = struct.pack(">Ih", 40, 7) + b"\xff" * 34
    pixels = np.arange(h * w * 3, dtype=np.uint8).reshape(3, h, w).tobytes()  # planar, raw (compression 0)
    path.write_bytes(b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3) + struct.pack(">II", 0, 0)
                     + struct.pack(">I", len(layers)) + layers + struct.pack(">H", 0) + pixels)
    return path


@pytest.mark.parametrize("build", [_tiff_with_unreadable_frame_table, _psd_with_unreadable_layer_table])
def test_unreadable_frame_table_is_said_not_claimed_as_one_frame(tmp_path: Path, build: Any) -> None:
    from typer.testing import CliRunner

    from featcli.cli import app

    p = build(tmp_path / ("pages.tif" if "tiff" in build.__name__ else "layers.psd"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception), Image.open(p) as im:  # noqa: B017 - whatever Pillow raises
            im.n_frames  # noqa: B018
        with Image.open(p) as im:  # the reference: frame 0 decodes whole
            im.load()
            expected = np.asarray(im.convert("RGB"))
    image = load_image(p, LoadOptions())
    assert image.header.n_frames is None
    np.testing.assert_array_equal(image.array, expected)
    runner = CliRunner()
    res = runner.invoke(app, ["info", str(p), "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["frames"] is None and rec["frame"] == 0
    res = runner.invoke(app, ["info", str(p)])
    assert res.exit_code == 0 and "frame 1 of ? (the frame table is unreadable" in res.stdout, res.output
    if p.suffix == ".tif":  # (Pillow's PSD seeks to "layer 1" of the unreadable table without a word)
        res = runner.invoke(app, ["info", str(p), "--frame", "1"])
        assert res.exit_code == 1 and res.stderr.count("\n") == 1 and "cannot seek to frame 1" in res.stderr, res.output
