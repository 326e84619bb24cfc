"""``featcli top --out-dir DIR``: one contact sheet per channel and one overview, from a search's answer.

The crops are cut from the images as the run loaded them (the same loading options, so the pixels are the
ones the stack saw) at each entry's receptive-field box (:func:`featcli.shape.field.field_of`), then drawn by
:func:`featcli.render.sheets.contact_sheet`. All the sheets are published together, or none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from featcli.errors import UsageError
from featcli.io.decode import display_name
from featcli.io.images import LoadOptions, load_image
from featcli.io.outputs import PendingOutputs
from featcli.io.png import png_writer
from featcli.render.paint import fmt
from featcli.render.sheets import Cell, contact_sheet, field_crop, to_rgb8
from featcli.run.destinations import safe_name
from featcli.run.top import ChannelTop, TopResult

__all__ = ["Images", "crops_of", "sheet_names", "write_sheets"]


def sheet_names(res: TopResult, out_dir: str) -> list[str]:
    """The files ``--out-dir`` gets: ``overview.png`` and ``channel_NNN_LABEL.png`` per channel."""
    names = [os.path.join(out_dir, "overview.png")]
    names += [os.path.join(out_dir, f"channel_{ch.channel:03d}_{safe_name(ch.label)}.png") for ch in res.channels]
    return names


class Images:
    """Images loaded once each, as the run loaded them, kept as 8-bit RGB."""

    def __init__(self, load: LoadOptions) -> None:
        self.load = load
        self.cache: dict[str, Any] = {}

    def rgb(self, path: str) -> Any:
        if path not in self.cache:
            from featcli.resources import resolve_sample

            image = load_image(resolve_sample(path), self.load)
            self.cache[path] = to_rgb8(image.array, image.value_max)
        return self.cache[path]


def _name(entry: dict[str, Any]) -> str:
    """An entry's image as a caption: its file name (a sample's name)."""
    return Path(display_name(entry["path"])).name.removeprefix("sample:")


def crops_of(ch: ChannelTop, images: Images) -> list[Cell]:
    """One cell per entry of ``ch``: the receptive-field crop, captioned with the image and the value."""
    cells = []
    for rank, e in enumerate(ch.entries, 1):
        rgb = inside = None
        if e["field"] is not None:
            image = images.rgb(e["path"])
            if list(image.shape[:2]) != list(e["size"]):
                raise UsageError(f"--out-dir: {display_name(e['path'])} was run at {e['size'][0]}x{e['size'][1]}, "
                                 f"not as loaded ({image.shape[0]}x{image.shape[1]}): the crops need the pixels "
                                 "the run saw")
            rgb, inside = field_crop(image, e["field"])
        cells.append(Cell(rgb, inside, f"#{rank} {fmt(e['value'])}", f"{_name(e)} ({e['y']}, {e['x']})"))
    return cells


def write_sheets(res: TopResult, out_dir: str, load: LoadOptions, *, force: bool = False,
                 inputs: Sequence[str] = ()) -> list[str]:
    """Draw and publish every sheet of ``res`` into ``out_dir``; the paths written."""
    if not res.has_fields:
        what = ("a layer between it and the image is not a sliding window, a position-keeping layer or a merge of "
                "equal shapes, or it sees one operand of a concatenation" if res.layer is not None
                else "a stage up to it is not a sliding window")
        raise UsageError(f"--out-dir: {res.where} has no receptive-field box ({what}), so there are no crops to "
                         "draw; the table and --jsonl give values and positions")
    images = Images(load)
    names = sheet_names(res, out_dir)
    where = res.where
    overview = []
    with PendingOutputs(force=force, inputs=inputs) as out:
        for ch, path in zip(res.channels, names[1:], strict=True):
            cells = crops_of(ch, images)
            health = (f"max {fmt(ch.max)}, mean {fmt(ch.mean)}, zeros {ch.zeros / max(ch.count, 1):.0%}"
                      f"{', DEAD' if ch.dead else ''}")
            sheet = contact_sheet(cells, title=f"channel {ch.channel} ({ch.label}): top {len(cells)} of {where}",
                                  subtitle=f"{res.images} images; {health}; grey stripes: padding outside the image")
            out.write(path, png_writer(sheet, path))
            best = cells[0] if cells and not ch.dead else Cell(None, None, "", "")
            detail = "dead" if ch.dead or not ch.entries else f"{fmt(ch.entries[0]['value'])} in {_name(ch.entries[0])}"
            overview.append(Cell(best.rgb, best.inside, f"{ch.channel}: {ch.label}", detail, dead=ch.dead))
        sheet = contact_sheet(overview, title=f"best patch of each channel of {where}",
                              subtitle=f"{res.images} images; red: dead (never positive, or constant)")
        out.write(names[0], png_writer(sheet, names[0]))
        return [str(p) for p in out.publish()]
