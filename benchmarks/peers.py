"""The tools people would use instead of featcli, as the benchmark suite runs them.

* Detection of the external peers (libvips' ``vips``, ImageMagick's ``convert``, OpenCV), each with the
  command that installs it when it is missing.
* Two whole-process Sobel scripts, run as ``python benchmarks/peers.py torch-sobel|opencv-sobel IN OUT``:
  a plain Pillow + torch + PNG script (what one writes after a tutorial) and OpenCV. Both compute what
  ``featcli run IMG conv:w=sobel_x+sobel_y,p=1 magnitude`` computes: Sobel X/Y of the sum of the RGB
  channels (featcli's default ``sum`` kernel mode), their magnitude, min-max scaled to one 8-bit map.
* The floor of a whole-process map job, ``python benchmarks/peers.py floor IN OUT``: decode the JPEG with
  Pillow (featcli's decoder) and encode one of its 8-bit channels as a PNG at zlib level 1, nothing else.
* An in-process OpenCV batch loop, ``python benchmarks/peers.py opencv-batch FOLDER OUTDIR``: for every JPEG,
  what ``featcli run FOLDER conv:w=sobel_x+sobel_y,p=1 magnitude maxpool:k=2 --out-dir OUTDIR`` does (decode,
  Sobel X/Y, magnitude, 2x2 max pool), with one 8-bit PNG per stage at zlib level 1.
* The tutorials' nested-loop NumPy convolution (``tutorial_conv``), imported in-process.

Heavy imports stay inside the functions, so a script's start-up time is its own.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


@dataclass(frozen=True)
class Peer:
    """An external tool: the argv prefix that runs it (None when missing) and how to install it."""

    name: str
    argv: tuple[str, ...] | None
    install: str
    version: str = ""


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else ""


def find_vips() -> Peer:
    """libvips' command-line tool."""
    exe = shutil.which("vips")
    version = _version([exe, "--version"]) if exe else ""
    return Peer("vips", (exe,) if exe and version.startswith("vips") else None,
                "apt-get install libvips-tools", version)


def find_imagemagick() -> Peer:
    """ImageMagick's ``convert`` (6) or ``magick`` (7); a ``convert`` that is not ImageMagick is ignored."""
    for argv in (["/usr/bin/convert"], [shutil.which("magick") or ""], [shutil.which("convert") or ""]):
        if argv[0]:
            version = _version([*argv, "-version"])
            if version.startswith("Version: ImageMagick"):  # a stand-in that only names it is not it
                return Peer("imagemagick", tuple(argv), "apt-get install imagemagick", version)
    return Peer("imagemagick", None, "apt-get install imagemagick")


def find_opencv() -> Peer:
    """OpenCV's Python bindings in this interpreter."""
    found = importlib.util.find_spec("cv2") is not None
    return Peer("opencv", (sys.executable, __file__, "opencv-sobel") if found else None,
                "pip install opencv-python-headless")


def torch_sobel(src: str, dst: str) -> None:
    """Pillow decode -> NCHW float tensor -> ``F.conv2d`` Sobel X/Y -> magnitude -> uint8 -> Pillow PNG."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    arr = np.array(Image.open(src).convert("RGB"))
    x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float() / 255
    sx = torch.tensor(SOBEL_X)
    w = torch.stack([sx, sx.T])[:, None].repeat(1, 3, 1, 1)  # (2, 3, 3, 3): summed over R, G, B
    g = F.conv2d(x, w, padding=1)
    m = torch.sqrt(g[0, 0] ** 2 + g[0, 1] ** 2)
    m = (m - m.min()) / (m.max() - m.min()).clamp_min(1e-12) * 255
    Image.fromarray(m.round().to(torch.uint8).numpy()).save(dst)  # Pillow's default PNG level (6)


def opencv_sobel(src: str, dst: str) -> None:
    """``cv2.imread`` -> channel sum -> ``cv2.Sobel`` X/Y -> ``cv2.magnitude`` -> min-max uint8 -> ``cv2.imwrite``."""
    import cv2
    import numpy as np

    img = cv2.imread(src, cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {src}")
    s = cv2.transform(img.astype(np.float32), np.ones((1, 3), np.float32))  # R + G + B, as featcli's sum mode
    gx = cv2.Sobel(s, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_CONSTANT)
    gy = cv2.Sobel(s, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_CONSTANT)
    m = cv2.magnitude(gx, gy)
    out = cv2.normalize(m, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)  # type: ignore[call-overload]
    if not cv2.imwrite(dst, out):  # OpenCV's default PNG compression
        raise SystemExit(f"cannot write {dst}")


def floor(src: str, dst: str) -> None:
    """Decode + encode and nothing else: Pillow decodes the JPEG, its green channel is saved as an 8-bit PNG
    at zlib level 1 (Pillow's adaptive row filters). No NumPy import."""
    from PIL import Image

    with Image.open(src) as im:
        im.load()
        im.getchannel(1).save(dst, compress_level=1)


def opencv_batch(folder: str, out: str) -> None:
    """Every ``*.jpg`` of ``folder``: imread, channel sum, Sobel X/Y, magnitude, 2x2 max pool; three 8-bit
    PNGs at zlib level 1 per image (the two Sobel maps side by side, each min-max scaled; the magnitude;
    the pooled magnitude)."""
    from pathlib import Path

    import cv2
    import numpy as np

    level = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ones = np.ones((1, 3), np.float32)

    def u8(a: np.ndarray) -> np.ndarray:
        return cv2.normalize(a, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)  # type: ignore[call-overload]

    for f in sorted(Path(folder).glob("*.jpg")):
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read {f}")
        s = cv2.transform(img.astype(np.float32), ones)
        gx = cv2.Sobel(s, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_CONSTANT)
        gy = cv2.Sobel(s, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_CONSTANT)
        m = cv2.magnitude(gx, gy)
        h, w = m.shape
        pooled = m[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3))
        for name, pic in (("s1_conv", np.hstack([u8(gx), u8(gy)])), ("s2_magnitude", u8(m)),
                          ("s3_maxpool", u8(pooled))):
            if not cv2.imwrite(str(Path(out) / f"{f.stem}_{name}.png"), pic, level):
                raise SystemExit(f"cannot write {out}")


def tutorial_conv(x: Any, kernel: Any, padding: int = 0, stride: int = 1) -> Any:
    """The tutorials' convolution: four Python loops and ``np.sum(slice * kernel)`` per output value.

    Args:
        x: (N, H, W, C) array.
        kernel: (kh, kw, C, out) array.

    Returns:
        (N, H', W', out) float64 array, cross-correlation as ``F.conv2d`` computes it.
    """
    import numpy as np

    if padding:
        x = np.pad(x, [(0, 0), (padding, padding), (padding, padding), (0, 0)])
    n, h, w, _ = x.shape
    kh, kw, _, out_c = kernel.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, oh, ow, out_c))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                for k in range(out_c):
                    window = x[b, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
                    out[b, i, j, k] = np.sum(window * kernel[:, :, :, k])
    return out


SCRIPTS = {"torch-sobel": torch_sobel, "opencv-sobel": opencv_sobel, "floor": floor, "opencv-batch": opencv_batch}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in SCRIPTS:
        print(f"usage: python benchmarks/peers.py {{{'|'.join(SCRIPTS)}}} IN OUT", file=sys.stderr)
        return 2
    SCRIPTS[args[0]](args[1], args[2])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
