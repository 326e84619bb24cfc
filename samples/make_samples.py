"""Make featcli's sample images, deterministically (same bytes every run).

    python samples/make_samples.py          # rewrite the images beside this script
    python samples/make_samples.py --check  # exit 1 if any image differs from what this script makes

Every image is small (the folder stays well under 2 MB) and shows something convolution and
pooling do visibly: hard edges for Sobel/Laplacian, stripes for orientation, noise for blur.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 256


def step_edge() -> Image.Image:
    """Dark left half, bright right half: sobel_x responds positively on the boundary."""
    a = np.zeros((64, 64), np.uint8)
    a[:, 32:] = 255
    return Image.fromarray(a, "L")


def stripes() -> Image.Image:
    """Diagonal colour stripes, period 16 px."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    band = ((x + y) // 8) % 2
    rgb = np.stack([band * 230 + 10, (1 - band) * 180 + 30, np.full_like(band, 90)], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def checkerboard() -> Image.Image:
    """Black and white 32 px squares (8x8 board)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    return Image.fromarray((((x // 32 + y // 32) % 2) * 255).astype(np.uint8), "L").convert("RGB")


def shapes() -> Image.Image:
    """Filled shapes with hard edges on a flat background: the demo image for edge kernels."""
    img = Image.new("RGB", (320, 240), (40, 44, 52))
    d = ImageDraw.Draw(img)
    d.rectangle((20, 30, 120, 130), fill=(230, 80, 60))
    d.ellipse((150, 40, 290, 180), fill=(70, 170, 230))
    d.polygon([(60, 220), (140, 150), (220, 220)], fill=(250, 210, 70))
    d.line((10, 200, 310, 10), fill=(240, 240, 240), width=4)
    return img


def gradient() -> Image.Image:
    """Smooth horizontal red, vertical green gradient: edge kernels give almost nothing."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / (SIZE - 1)
    rgb = np.stack([x * 255, y * 255, (1 - x) * 128 + 64], axis=-1)
    return Image.fromarray(np.round(rgb).astype(np.uint8), "RGB")


def noise() -> Image.Image:
    """Seeded Gaussian-noise texture over a soft blob: what blur kernels smooth away."""
    rng = np.random.default_rng(20261122)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    blob = 120 * np.exp(-(((x - 128) ** 2 + (y - 128) ** 2) / (2 * 60.0**2)))
    a = 60 + blob[..., None] + rng.normal(0, 25, (SIZE, SIZE, 3))
    return Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "RGB")


def rgba_badge() -> Image.Image:
    """RGBA: an opaque ring and a half-transparent square on a fully transparent background."""
    img = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((10, 10, 150, 150), outline=(20, 120, 220, 255), width=12)
    d.rectangle((50, 50, 110, 110), fill=(220, 40, 40, 128))
    return img


def gray_rings() -> Image.Image:
    """Grayscale (mode L) concentric rings whose frequency rises outwards: aliasing under pooling."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) - SIZE / 2
    r2 = (x**2 + y**2) / (SIZE / 2) ** 2
    a = 127.5 + 127.5 * np.cos(np.pi * 40 * r2)
    return Image.fromarray(np.round(a).astype(np.uint8), "L")


def photo() -> Image.Image:
    """A photo-like RGB scene (sky gradient, hills, sun, texture), saved as JPEG."""
    h, w = 240, 320
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    sky = np.stack([90 + 0.3 * y, 150 + 0.25 * y, 235 - 0.1 * y], axis=-1)
    hill = y > 150 + 30 * np.sin(x / 37.0) + 12 * np.sin(x / 11.0)
    ground = np.stack([60 + 40 * np.sin(y / 5.0) ** 2 + 0 * x, 120 + 0.1 * y + 0 * x, np.full_like(x, 50)], axis=-1)
    img = np.where(hill[..., None], ground, sky)
    sun = (x - 250) ** 2 + (y - 60) ** 2 < 28**2
    img[sun] = (255, 230, 120)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), "RGB")


SAMPLES: dict[str, tuple[Callable[[], Image.Image], dict[str, object]]] = {
    "step_edge.png": (step_edge, {}),
    "stripes.png": (stripes, {}),
    "checkerboard.png": (checkerboard, {}),
    "shapes.png": (shapes, {}),
    "gradient.png": (gradient, {}),
    "noise.png": (noise, {}),
    "rgba_badge.png": (rgba_badge, {}),
    "gray_rings.png": (gray_rings, {}),
    "photo.jpg": (photo, {"quality": 90, "optimize": False}),
}


def render(name: str) -> bytes:
    make, params = SAMPLES[name]
    buf = io.BytesIO()
    make().save(buf, format="PNG" if name.endswith(".png") else "JPEG", **params)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    bad = 0
    for name in SAMPLES:
        data = render(name)
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                print(f"differs: {name}")
                bad += 1
        else:
            path.write_bytes(data)
            print(f"wrote {name} ({len(data):,} bytes)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
