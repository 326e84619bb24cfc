"""A model run's files: the selected layers' feature-map grids and their raw tensors keyed by layer name.

As :mod:`featcli.run.write` does for stages: every file goes through :class:`featcli.io.outputs.PendingOutputs`
(all of an image's files or none, never over an input, ``--force`` to replace), maps are drawn by
:mod:`featcli.render` (one row of tiles per layer), ``--save`` writes float32 tensors (``.npz``/``.pt``: every
kept layer by name; ``.npy``: one).
"""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path
from typing import Any

from featcli.errors import OutputError
from featcli.io.outputs import PendingOutputs
from featcli.io.png import png_writer
from featcli.models.service import ModelResult
from featcli.render import GridOptions, Tile, render_grid, render_single

__all__ = ["maps_of", "safe_name", "write_model_outputs"]


def safe_name(layer: str) -> str:
    """A layer name as a file-name part: ``/stem/stem.0/Conv`` -> ``stem_stem.0_Conv``.

    >>> safe_name("/stem/stem.0/Conv"), safe_name("block.conv1:conv2d_1"), safe_name("head[0]")
    ('stem_stem.0_Conv', 'block.conv1_conv2d_1', 'head_0')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", layer).strip("._") or "layer"


def _numpy(t: Any) -> Any:
    if hasattr(t, "detach"):
        import torch

        return t.detach().to("cpu", torch.float32).numpy()
    import numpy as np

    return np.asarray(t, dtype=np.float32)


def maps_of(result: ModelResult) -> dict[str, Any]:
    """The kept tensors by key (``layer``, or ``layer[i]`` for a layer with several outputs); without
    ``--layers``, the last layer with spatial maps."""
    kept = dict(result.kept)
    if not kept and result.last_maps is not None:
        kept = {result.last_maps[0]: result.last_maps[1]}
    out: dict[str, Any] = {}
    for name, tensors in kept.items():
        for i, t in enumerate(tensors):
            out[name if len(tensors) == 1 else f"{name}[{i}]"] = t
    return out


def _tiles(maps: dict[str, Any]) -> list[Tile]:
    tiles: list[Tile] = []
    for key, t in maps.items():
        if len(t.shape) != 4 or 0 in t.shape:
            continue
        a = _numpy(t[0:1])[0]
        tiles.extend(Tile(f"{key} · ch{c}", a[c], stage=key) for c in range(a.shape[0]))
    return tiles


def _picture(maps: dict[str, Any], opts: GridOptions, title: str) -> Any:
    tiles = _tiles(maps)
    if not tiles:
        shapes = ", ".join(f"{k} {'x'.join(map(str, t.shape))}" for k, t in maps.items())
        raise OutputError(f"no feature maps to draw: {shapes} (pick layers with (N, C, H, W) outputs with --layers)")
    opts = opts if opts.title else dataclasses.replace(opts, title=title)
    return render_single(tiles[0], opts) if len(tiles) == 1 else render_grid(tiles, opts)


def _save(maps: dict[str, Any], path: str, out: PendingOutputs) -> None:
    ext = Path(path).suffix.lower()
    arrays = {k: _numpy(t) for k, t in maps.items()}
    if ext == ".npy" and len(arrays) != 1:
        raise OutputError(f".npy holds one tensor; {len(arrays)} kept ({', '.join(arrays)}): use .npz or .pt",
                          path=path)

    def write(fh: Any) -> None:
        import numpy as np

        if ext == ".npy":
            np.save(fh, next(iter(arrays.values())), allow_pickle=False)
        elif ext == ".npz":
            np.savez(fh, **arrays)
        else:
            import torch

            buf = io.BytesIO()
            torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, buf)
            fh.write(buf.getvalue())

    out.write(path, write)


def write_model_outputs(result: ModelResult, *, output: str | None, out_dir: str | None, save: str | None,
                        grid: GridOptions, force: bool, command: str, stem: str) -> list[str]:
    """``-o`` (one grid of every kept layer), ``--out-dir`` (one grid per layer), ``--save``; the paths written."""
    if not (output or out_dir or save):
        return []
    maps = maps_of(result)
    label = result.image.header.path
    meta = {"featcli:command": command, "featcli:input": label, "featcli:model": result.model}
    with PendingOutputs(force=force, inputs=[label, result.model]) as out:
        if output:
            pic = _picture(maps, grid, f"{label} · {result.model} · {', '.join(maps)}")
            out.write(output, png_writer(pic, output, metadata={**meta, "featcli:layers": " ".join(maps)}))
        if out_dir:
            used: set[str] = set()
            for key, t in maps.items():
                if len(t.shape) != 4:
                    continue
                name = f"{stem}_{safe_name(key)}"
                while name in used:
                    name += "_"
                used.add(name)
                path = str(Path(out_dir) / f"{name}.png")
                pic = _picture({key: t}, grid, f"{label} · {key}")
                out.write(path, png_writer(pic, path, metadata={**meta, "featcli:layers": key}))
        if save:
            _save(maps, save, out)
        return [str(p) for p in out.publish()]
