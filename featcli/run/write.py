"""Turning a run's maps into files: the grid or full-resolution map, one PNG per stage or layer, raw tensors.

The one maps writer of every route: a stage stack's :class:`featcli.engine.loop.StageResult` rows and a
network's kept layers (:class:`featcli.run.network.LayerMaps`) have the attributes of :class:`Maps`. Every
file goes through :mod:`featcli.io.outputs` (atomic, never over an input, ``--force`` to replace), and one
image's files are published together: each is rendered and encoded into a temp file first, then all get their
names; if any fails, none is left.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Protocol

from featcli.errors import OutputError
from featcli.io.images import LoadedImage
from featcli.io.outputs import STDOUT, InputSet, PendingOutputs
from featcli.io.png import png_writer
from featcli.io.tensors import as_numpy, save_tensors
from featcli.render import Tile, render_grid, render_single
from featcli.run.config import RunConfig
from featcli.run.destinations import Destinations, check_inside


class Maps(Protocol):
    """What the writer reads of one stage's result or one kept layer output."""

    @property
    def index(self) -> int: ...
    @property
    def tensor(self) -> Any: ...
    @property
    def display(self) -> Any: ...
    @property
    def ranges(self) -> list[tuple[float, float]] | None: ...
    @property
    def name(self) -> str: ...  # the key in saved files
    @property
    def caption(self) -> str: ...  # a tile's prefix
    @property
    def title(self) -> str: ...  # its own picture's title
    @property
    def op(self) -> str: ...
    @property
    def spec(self) -> str: ...
    @property
    def actual(self) -> tuple[int, ...]: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def empty(self) -> bool: ...
    @property
    def min(self) -> float: ...
    @property
    def max(self) -> float: ...


def _spatial(r: Maps) -> bool:
    return len(r.actual) == 4


def round_off_refs(results: Sequence[Maps]) -> dict[int, float]:
    """Each stage's round-off reference: the largest |v| of the run's stages up to it (render draws values
    within 1e-6 of it as 0, e.g. gap of a Sobel map: -8e-10)."""
    refs, big = {}, 0.0
    for r in results:
        if math.isfinite(r.min) and math.isfinite(r.max):
            big = max(big, abs(r.min), abs(r.max))
        refs[r.index] = big
    return refs


def tiles_of(results: Sequence[Maps], refs: dict[int, float]) -> list[Tile]:
    """The tiles of ``results``' maps, labelled ``s1 conv · sobel_x`` (the grids' and the --html page's)."""
    tiles: list[Tile] = []
    for r in results:
        ref = refs.get(r.index)
        if r.display is not None and r.ranges is not None:
            full = (r.actual[2], r.actual[3])
            tiles.extend(Tile(f"{r.caption} · {label}", r.display[c], stage=r.name, full_shape=full,
                              vrange=r.ranges[c], ref=ref) for c, label in enumerate(r.labels))
            continue
        maps = as_numpy(r.tensor[0])
        for c, label in enumerate(r.labels):
            vrange = r.ranges[c] if r.ranges else None
            tiles.append(Tile(f"{r.caption} · {label}", maps[c], stage=r.name, vrange=vrange, ref=ref))
    return tiles


def _picture(results: Sequence[Maps], cfg: RunConfig, image: LoadedImage, title: str,
             refs: dict[int, float]) -> Any:
    """One map (and no input tile): labelled, or bare with --raw; several maps: a labelled grid."""
    for r in results:
        if r.empty:
            raise OutputError(f"stage {r.index} '{r.spec}' has an empty output ({'x'.join(map(str, r.actual))}, "
                              "as torch gives it): nothing to draw; pick other stages with --stages")
    tiles = tiles_of(results, refs)
    opts = cfg.grid if cfg.grid.title else dataclasses.replace(cfg.grid, title=title)
    if len(tiles) == 1 and not cfg.show_input:
        return render_single(tiles[0], opts)
    shown = image.array[:, :, :3] if cfg.show_input else None
    return render_grid(tiles, opts, input_image=shown)


def _metadata(cfg: RunConfig, path: str, stages: Sequence[Maps], extra: dict[str, str]) -> dict[str, str]:
    meta = {
        "featcli:command": cfg.command,
        "featcli:input": path,
        **extra,
        "featcli:stages": " ".join(f"{r.name}={'x'.join(map(str, r.actual))}" for r in stages),
    }
    if cfg.run_id:
        meta["featcli:run"] = cfg.run_id
    return meta


def write_outputs(dest: Destinations, cfg: RunConfig, image: LoadedImage, results: Sequence[Maps],
                  inputs: InputSet | None = None, *, title: str | None = None,
                  metadata: dict[str, str] | None = None) -> list[str]:
    """Render and write every output of one image: all of them, or none (nothing partial on failure).

    ``inputs``: the run's input files, which no output may replace (default: this image's file); ``title``:
    the -o picture's (default: the stages' ops); ``metadata``: more PNG text fields (a network's name).
    """
    refs = round_off_refs(results)
    label = image.header.path
    extra = metadata or {}
    with PendingOutputs(force=cfg.force, inputs=inputs if inputs is not None else [label]) as out:
        if dest.output:
            picked = [r for r in results if r.index in dest.shown and _spatial(r)]
            caption = title or " -> ".join(r.op for r in results)
            pic = _picture(picked, cfg, image, f"{label} · {caption}", refs)
            name = "stdout.png" if dest.output == STDOUT else dest.output
            out.write(dest.output, png_writer(pic, name, metadata=_metadata(cfg, label, picked, extra)))
            del pic
        for r in results:
            if r.index in dest.stage_files:
                path = dest.stage_files[r.index]
                if cfg.out_dir:
                    check_inside(cfg.out_dir, path)
                pic = _picture([r], cfg, image, f"{label} · {r.title}", refs)
                out.write(path, png_writer(pic, path, metadata=_metadata(cfg, label, [r], extra)))
                del pic
        if dest.save:
            save_tensors({r.name: r.tensor for r in results if r.index in dest.saved}, dest.save, out,
                         hint=dest.npy_hint)
        return [str(p) for p in out.publish()]
