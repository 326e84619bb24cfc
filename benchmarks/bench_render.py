"""Feature-map grid rendering: featcli.render against matplotlib ``subplots`` + ``imshow`` + ``savefig``.

Scenarios (medians over ``--runs``; every figure includes writing the PNG file):

* ``grid``: 16 maps of 4080x3060 float32 (a 12.5 MP photo's feature maps, half signed, half
  non-negative) as one labelled grid with colour scales, featcli vs matplotlib at a similar pixel count.
* ``map``: one 12.5 MP non-negative map (an edge magnitude) at full resolution, render + PNG level 1.

Run: ``python benchmarks/bench_render.py [--runs 3] [--json] [--quick]``. ``--quick`` uses 1020x765
maps and one run (a smoke test, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from featcli.enums import Norm  # noqa: E402
from featcli.render import GridOptions, Tile, render_grid, render_map, save_png  # noqa: E402

Maps = list[tuple[str, np.ndarray]]


def make_maps(h: int, w: int, n: int = 16) -> Maps:
    """Deterministic photo-feature-like maps: oriented gratings with blobs and noise, odd ones rectified."""
    rng = np.random.default_rng(1234)
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    noise = rng.standard_normal((h, w), dtype=np.float32)
    maps: Maps = []
    for i in range(n):
        fx, fy = 3 + 5 * i, 2 + 3 * (n - i)
        m = np.sin(2 * np.pi * fx * x) * np.cos(2 * np.pi * fy * y) * (1 + i / 4)
        m = m + np.exp(-(((x - 0.3 - i / 40) ** 2 + (y - 0.6) ** 2) / 0.02)) * 3 + 0.25 * noise
        m = m.astype(np.float32, copy=False)
        maps.append((f"s1 conv · k{i}" if i % 2 == 0 else f"s2 relu · k{i}", np.abs(m) if i % 2 else m))
    return maps


def featcli_grid(maps: Maps, out: Path) -> tuple[int, int]:
    tiles = [Tile(label, m) for label, m in maps]
    image = render_grid(tiles, GridOptions(norm=Norm.PER_MAP, title="16 feature maps of a 12.5 MP image"))
    save_png(image, out, metadata={"featcli:command": "bench_render"}, force=True)
    return image.size


def matplotlib_grid(maps: Maps, out: Path, size: tuple[int, int]) -> tuple[int, int]:
    import matplotlib.pyplot as plt

    dpi = 100
    fig, axes = plt.subplots(4, 4, figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    for ax, (label, m) in zip(axes.flat, maps, strict=True):
        lo, hi = float(m.min()), float(m.max())
        if lo < 0:
            lim = max(-lo, hi)
            im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            im = ax.imshow(m, cmap="viridis", vmin=lo, vmax=hi)
        ax.set_title(f"{label}\n{m.shape[0]}x{m.shape[1]}  {lo:.3g} … {hi:.3g}", fontsize=8)
        ax.axis("off")
        fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02)
    fig.suptitle("16 feature maps of a 12.5 MP image")
    fig.savefig(out, dpi=dpi)
    w, h = fig.canvas.get_width_height()
    plt.close(fig)
    return w, h


def featcli_map(m: np.ndarray, out: Path) -> tuple[int, int]:
    image = render_map(m)
    save_png(image, out, force=True)
    return image.size


def timed(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per scenario (median reported)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--quick", action="store_true", help="small maps, one run: a smoke test")
    args = ap.parse_args(argv)
    h, w = (765, 1020) if args.quick else (3060, 4080)
    runs = 1 if args.quick else max(1, args.runs)

    t0 = time.perf_counter()
    maps = make_maps(h, w)
    setup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # Warm-up: imports, colormap LUTs, fonts; matplotlib's pyplot import is not timed either.
        featcli_grid(maps[:2], d / "warm.png")
        import matplotlib.pyplot  # noqa: F401

        fc, size = timed(lambda: featcli_grid(maps, d / "featcli.png"), runs)
        mp, mp_size = timed(lambda: matplotlib_grid(maps, d / "mpl.png", size), runs)  # type: ignore[arg-type]
        one, _ = timed(lambda: featcli_map(maps[1][1], d / "map.png"), max(runs, 3))
        sizes = {p.name: p.stat().st_size for p in d.glob("*.png")}

    result = {
        "maps": f"16 x {w}x{h} float32",
        "runs": runs,
        "setup_s": round(setup, 3),
        "grid_featcli_s": round(fc, 4),
        "grid_matplotlib_s": round(mp, 4),
        "grid_speedup": round(mp / fc, 1),
        "grid_px_featcli": list(size),  # type: ignore[arg-type]
        "grid_px_matplotlib": list(mp_size),  # type: ignore[arg-type]
        "map_render_encode_s": round(one, 4),
        "map_px": f"{w}x{h}",
        "png_bytes": sizes,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"feature-map rendering, {result['maps']}, median of {runs} run(s), {os.cpu_count()} CPUs")
    print(f"{'scenario':<44} {'seconds':>9} {'ratio':>8}")
    print(f"{'grid: matplotlib subplots+imshow+savefig':<44} {mp:>9.3f} {'1.0x':>8}")
    print(f"{'grid: featcli render_grid+save_png':<44} {fc:>9.3f} {mp / fc:>7.1f}x")
    print(f"{'single map: featcli render_map+save_png':<44} {one:>9.3f} {'':>8}")
    print(f"grid sizes: featcli {size[0]}x{size[1]}, matplotlib {mp_size[0]}x{mp_size[1]}")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
