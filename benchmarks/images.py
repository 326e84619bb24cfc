"""Deterministic photo-like test images for the benchmarks (no downloads).

A "photo" here has what real photos have and flat synthetic images lack: smooth gradients (sky),
textured regions (noise at several scales), hard edges (shapes, a horizon) and JPEG's own artefacts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CACHE = Path(__file__).resolve().parent.parent / ".bench"


def photo(width: int, height: int, seed: int) -> Image.Image:
    """An RGB photo-like image of ``width`` x ``height``, the same for the same seed."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    hue = rng.uniform(0.6, 1.4, 3).astype(np.float32)
    zero = 0 * x
    sky = np.stack([(90 + 80 * y) * hue[0] + zero, (140 + 60 * y) * hue[1] + zero, (230 - 40 * y) * hue[2] + zero], -1)
    # Coarse texture: low-resolution noise upsampled (cheap "clouds"/"grass").
    small = rng.normal(0, 1, (max(2, height // 32), max(2, width // 32), 3)).astype(np.float32)
    tex = np.asarray(Image.fromarray(((small * 40) + 128).clip(0, 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC), np.float32) - 128
    horizon = (0.55 + 0.08 * np.sin(x * rng.uniform(5, 15) + rng.uniform(0, 6))) > y
    ground = np.stack([70 + 50 * y + 0 * x, 110 + 40 * y + 0 * x, 40 + 20 * y + 0 * x], -1)
    img = np.where(horizon[..., None], sky, ground) + tex
    img += rng.normal(0, 6, (height, width, 3)).astype(np.float32)
    im = Image.fromarray(img.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    s = min(width, height)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.03, 0.15) * s
        col = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=col)
        else:
            d.rectangle((cx - r, cy - r / 2, cx + r, cy + r / 2), fill=col)
    return im.filter(ImageFilter.SMOOTH) if s < 1000 else im


def jpeg_folder(count: int = 200, size: int = 640, quality: int = 90) -> Path:
    """``count`` photo-like ``size`` x ``size`` JPEGs in .bench/jpeg{size}x{count}/ (made once, then reused)."""
    folder = CACHE / f"jpeg{size}x{count}"
    if len(list(folder.glob("*.jpg"))) != count:
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            photo(size, size, seed=i).save(folder / f"img{i:04d}.jpg", quality=quality)
    return folder


def photo12mp(quality: int = 92) -> Path:
    """A 4080x3060 (12.5 MP) photo-like JPEG, as a phone camera makes."""
    path = CACHE / "photo12mp.jpg"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        photo(4080, 3060, seed=12).save(path, quality=quality)
    return path
