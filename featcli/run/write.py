"""Turning a run's stage results into files: the grid or full-resolution map, per-stage PNGs, raw tensors.

Every file goes through :mod:`featcli.io.outputs` (atomic, never over an input, ``--force`` to replace), and
one image's files are published together: each is rendered and encoded into a temp file first, then all get
their names; if any fails, none is left.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featcli.engine.loop import StageResult
from featcli.errors import OutputError
from featcli.io.images import LoadedImage
from featcli.io.outputs import STDOUT, InputSet, PendingOutputs
from featcli.io.png import png_writer
from featcli.render import Tile, render_grid, render_single
from featcli.run.config import RunConfig
from featcli.run.destinations import Destinations, check_inside


def _spatial(r: StageResult) -> bool:
    return len(r.actual) == 4


def as_numpy(t: Any) -> Any:
    """A stage tensor as a float32 NumPy array (torch tensors are moved to the CPU first)."""
    if hasattr(t, "detach"):
        import torch

        return t.detach().to("cpu", torch.float32).numpy()
    return t


def _refs(results: Sequence[StageResult]) -> dict[int, float]:
    """Each stage's round-off reference: the largest |v| of the run's stages up to it (render draws values
    within 1e-6 of it as 0, e.g. gap of a Sobel map: -8e-10)."""
    refs, big = {}, 0.0
    for r in results:
        if math.isfinite(r.min) and math.isfinite(r.max):
            big = max(big, abs(r.min), abs(r.max))
        refs[r.index] = big
    return refs


def _tiles(results: Sequence[StageResult], refs: dict[int, float]) -> list[Tile]:
    tiles: list[Tile] = []
    for r in results:
        ref = refs.get(r.index)
        if r.display is not None and r.ranges is not None:
            full = (r.actual[2], r.actual[3])
            tiles.extend(Tile(f"s{r.index} {r.op} · {label}", r.display[c], stage=r.name, full_shape=full,
                              vrange=r.ranges[c], ref=ref) for c, label in enumerate(r.labels))
            continue
        maps = as_numpy(r.tensor[0])
        for c, label in enumerate(r.labels):
            vrange = r.ranges[c] if r.ranges else None
            tiles.append(Tile(f"s{r.index} {r.op} · {label}", maps[c], stage=r.name, vrange=vrange, ref=ref))
    return tiles


def _picture(results: Sequence[StageResult], cfg: RunConfig, image: LoadedImage, title: str,
             refs: dict[int, float]) -> Any:
    """One map (and no input tile): labelled, or bare with --raw; several maps: a labelled grid."""
    for r in results:
        if r.empty:
            raise OutputError(f"stage {r.index} '{r.spec}' has an empty output ({'x'.join(map(str, r.actual))}, "
                              "as torch gives it): nothing to draw; pick other stages with --stages")
    tiles = _tiles(results, refs)
    opts = cfg.grid if cfg.grid.title else dataclasses.replace(cfg.grid, title=title)
    if len(tiles) == 1 and not cfg.show_input:
        return render_single(tiles[0], opts)
    shown = image.array[:, :, :3] if cfg.show_input else None
    return render_grid(tiles, opts, input_image=shown)


def _metadata(cfg: RunConfig, path: str, stages: Sequence[StageResult]) -> dict[str, str]:
    meta = {
        "featcli:command": cfg.command,
        "featcli:input": path,
        "featcli:stages": " ".join(f"{r.name}={'x'.join(map(str, r.actual))}" for r in stages),
    }
    if cfg.run_id:
        meta["featcli:run"] = cfg.run_id
    return meta


def _save_raw(results: Sequence[StageResult], picked: list[int], path: str, out: PendingOutputs) -> None:
    ext = Path(path).suffix.lower()
    tensors = {r.name: as_numpy(r.tensor) for r in results if r.index in picked}
    if ext == ".npy":
        if len(tensors) != 1:
            raise OutputError(f".npy holds one stage; {len(tensors)} selected (use --stages N, or .npz)", path=path)
        (only,) = tensors.values()

        def write(fh: Any) -> None:
            import numpy as np

            np.save(fh, only, allow_pickle=False)
    elif ext == ".npz":

        def write(fh: Any) -> None:
            import numpy as np

            np.savez(fh, **tensors)
    else:

        def write(fh: Any) -> None:
            import torch

            buf = io.BytesIO()
            torch.save({k: torch.from_numpy(v) for k, v in tensors.items()}, buf)
            fh.write(buf.getvalue())

    out.write(path, write)


def write_outputs(dest: Destinations, cfg: RunConfig, image: LoadedImage, results: Sequence[StageResult],
                  inputs: InputSet | None = None) -> list[str]:
    """Render and write every output of one image: all of them, or none (nothing partial on failure).

    ``inputs``: the run's input files, which no output may replace (default: this image's file).
    """
    refs = _refs(results)
    label = image.header.path
    with PendingOutputs(force=cfg.force, inputs=inputs if inputs is not None else [label]) as out:
        if dest.output:
            picked = [r for r in results if r.index in dest.shown and _spatial(r)]
            pic = _picture(picked, cfg, image, f"{label} · {' -> '.join(r.op for r in results)}", refs)
            name = "stdout.png" if dest.output == STDOUT else dest.output
            out.write(dest.output, png_writer(pic, name, metadata=_metadata(cfg, label, picked)))
            del pic
        for r in results:
            if r.index in dest.stage_files:
                path = dest.stage_files[r.index]
                if cfg.out_dir:
                    check_inside(cfg.out_dir, path)
                pic = _picture([r], cfg, image, f"{label} · s{r.index} {r.spec}", refs)
                out.write(path, png_writer(pic, path, metadata=_metadata(cfg, label, [r])))
                del pic
        if dest.save:
            _save_raw(results, dest.saved, dest.save, out)
        return [str(p) for p in out.publish()]
