"""``featcli top --html FILE``: a search's answer as one page: the channels, and each one's top patches.

The channel table (best value, where, health) links each row to its channel: the contact sheet of its top K
receptive-field crops (the same crops and drawing as ``--out-dir``'s sheets: :func:`featcli.run.topsheets.crops_of`,
:func:`featcli.render.sheets.contact_sheet`) and the table of its entries with each box in input pixels.
"""

from __future__ import annotations

from pathlib import Path

from featcli.io.decode import display_name
from featcli.io.images import LoadOptions
from featcli.render.page import Page, Section
from featcli.render.paint import fmt
from featcli.run.top import TopResult

__all__ = ["top_page"]


def top_page(res: TopResult, load: LoadOptions, *, command: str = "") -> Page:
    """The page of ``res`` (see the module docstring); ``load``: how the run loaded its images (for the crops)."""
    from featcli.render.sheets import contact_sheet
    from featcli.run.topsheets import Images, crops_of

    page = Page("featcli top", command=command)
    sec = Section(f"top {res.k} of {res.where} over {res.images} images", anchor="top")
    sec.text(f"{len(res.channels)} channels; {len(res.failed)} images failed; {res.seconds:.1f} s", note=True)
    rows = []
    for ch in res.channels:
        e = ch.entries[0] if ch.entries else None
        rows.append([str(ch.channel), ch.label, fmt(e["value"]) if e else "",
                     Path(display_name(e["path"])).name if e else "", f"({e['y']}, {e['x']})" if e else "",
                     fmt(ch.max), fmt(ch.mean), f"{ch.zeros / max(ch.count, 1):.0%}", "dead" if ch.dead else ""])
    sec.table(["#", "channel", "best", "image", "(y, x)", "max", "mean", "zeros", ""], rows,
              links=[f"ch{ch.channel}" for ch in res.channels], numeric=(2, 5, 6, 7))
    for rec in res.failed:
        sec.text(f"failed: {rec.get('error') or rec.get('path')}", note=True)
    images = Images(load) if res.has_fields else None
    if images is None:
        sec.text(f"{res.where} has no receptive-field box (not a chain of sliding windows): no patches to show",
                 note=True)
    for ch in res.channels:
        sec.heading(f"channel {ch.channel} ({ch.label})" + (" · dead" if ch.dead else ""), anchor=f"ch{ch.channel}")
        sec.table(["rank", "value", "image", "(y, x)", "input box (top, left, bottom, right)"],
                  [[str(n), fmt(e["value"]), display_name(e["path"]), f"({e['y']}, {e['x']})",
                    "" if e["field"] is None else str(tuple(e["field"]))] for n, e in enumerate(ch.entries, 1)],
                  numeric=(1,))
        if images is not None and ch.entries:
            cells = crops_of(ch, images)
            sheet = contact_sheet(cells, title=f"channel {ch.channel} ({ch.label}): top {len(cells)} of {res.where}",
                                  subtitle="grey stripes: padding outside the image")
            sec.picture(sheet, f"channel {ch.channel}: its top {len(cells)} patches (receptive fields)")
    page.add(sec)
    return page
