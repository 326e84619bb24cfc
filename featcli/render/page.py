"""The ``--html`` page: one self-contained HTML file of sections (text, tables, map grids, pictures, curves).

A small builder every command shares (``run``, ``top``, ``train``; ``diff`` can wire in the same way)::

    page = Page("featcli run", command="featcli run img.png -k sobel_x --html page.html")
    sec = Section("img.png", anchor="img1")
    sec.table(["#", "stage", "✓"], [["1", "conv", "✓"]], links=["img1-s1"], status=2)
    sec.maps(tiles, GridOptions(), anchors={"s1_conv": "img1-s1"})
    sec.picture(pil_image, "loss and accuracy")
    sec.curves("loss", {"train": [(1, 0.9), (2, 0.5)]})
    page.add(sec)
    page.write("page.html", force=False, inputs=["img.png"])

Everything is inline (style, script, pictures as ``data:`` URIs): the page opens from disk with no network.
Its size is bounded: sections are added in order and a map grid or picture that would take the page past
``budget`` bytes is left out, the page saying which (so memory is bounded too: what is left out is dropped).
The file is written atomically (:func:`featcli.io.outputs.atomic_write`: never over an input, ``--force`` to
replace).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featcli.render.options import GridOptions, Tile

__all__ = ["BUDGET", "Page", "Section", "check_page"]

#: The page's size budget in bytes (about 20 MB): past it, map grids and pictures are left out.
BUDGET = 20_000_000

QUANTISED = ("Hover a map for its position and value, and for a stage that slides a window, the input pixels "
             "that output sees (the box on the input picture); click a map to enlarge it. Maps are shown at "
             "display resolution (--tile-px), coloured exactly as the PNG grids; the values behind the hover are "
             "stored as float16 (about 3 significant digits, as shown), and where a map is shrunk for display a "
             "pixel holds its block's value (--reduce).")


@dataclass(frozen=True)
class Block:
    """A piece of a section: its HTML, and whether (and as what) the budget may leave it out."""

    html: str
    what: str | None = None  #: None: always kept (text, tables); else its name in the "left out" note
    maps: bool = False  #: a map grid: shown beside the section's input picture


@dataclass
class Section:
    """One part of the page (an image of a run, the top channels, a training), built block by block."""

    title: str
    anchor: str | None = None
    blocks: list[Block] = field(default_factory=list)
    side: str | None = None  #: the input picture, kept beside the maps

    def text(self, text: str, *, note: bool = False) -> Section:
        """A paragraph (``note``: smaller and grey)."""
        self.blocks.append(Block(f'<p{" class=note" if note else ""}>{html.escape(text)}</p>'))
        return self

    def heading(self, text: str, *, anchor: str | None = None) -> Section:
        """A sub-heading (``anchor``: the id a table row or another page links to)."""
        self.blocks.append(Block(f"<h3{_id(anchor)}>{html.escape(text)}</h3>"))
        return self

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *,
              links: Sequence[str | None] | None = None, status: int | None = None,
              wrap: Iterable[int] = (), numeric: Iterable[int] = (), caption: str | None = None) -> Section:
        """A table; ``links[i]`` makes row ``i``'s first cell a link to that anchor; column ``status`` holds
        ✓/✗ (coloured); columns in ``wrap`` may wrap (formulas), those in ``numeric`` align right."""
        wraps, nums = set(wrap), set(numeric)
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = []
        for i, row in enumerate(rows):
            cells = []
            for c, v in enumerate(row):
                text = html.escape("" if v is None else str(v))
                if c == 0 and links and i < len(links) and links[i]:
                    text = f'<a href="#{html.escape(str(links[i]))}">{text}</a>'
                cls = ("ok" if v == "✓" else "bad" if v == "✗" else "") if c == status else ""
                cls = " ".join(x for x in (cls, "wrap" if c in wraps else "", "num" if c in nums else "") if x)
                cells.append(f'<td{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{text}</td>')
            body.append(f"<tr>{''.join(cells)}</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(Block(f'<div class="tablewrap"><table class="rows">{cap}<thead><tr>{head}</tr></thead>'
                                 f"<tbody>{''.join(body)}</tbody></table></div>"))
        return self

    def maps(self, tiles: Sequence[Tile], options: GridOptions, *, anchors: Mapping[str | None, str] | None = None,
             titles: Mapping[str | None, str] | None = None,
             fields: Mapping[str | None, tuple[int, ...]] | None = None) -> Section:
        """Map grids, one per ``Tile.stage``, coloured as the PNG grids (:func:`featcli.render.page_maps.map_blocks`);
        ``fields`` draw on the section's input picture (:meth:`input_picture`)."""
        from featcli.render.page_maps import map_blocks

        input_id = f"{self.anchor}-input" if self.side is not None and self.anchor else None
        for b in map_blocks(tiles, options, anchors=anchors, titles=titles, fields=fields, input_id=input_id):
            self.blocks.append(Block(b.html, b.what, maps=True))
        return self

    def input_picture(self, array: Any, *, longest: int = 320, caption: str = "input") -> Section:
        """The input image beside the maps (hovering a map draws its receptive field on it); ``array`` is
        ``(H, W)`` or ``(H, W, C)`` uint8, at the size the run saw it."""
        from featcli.render.page_maps import data_uri, thumbnail

        png, (dh, dw) = thumbnail(array, longest)
        h, w = int(array.shape[0]), int(array.shape[1])
        box_id = f"{self.anchor or 'section'}-input"
        self.side = (f'<div class="inputbox" id="{html.escape(box_id)}" data-h="{h}" data-w="{w}">'
                     f'<img style="--w:{dw * max(1, 160 // max(dh, dw))}px" alt="{html.escape(caption)}" '
                     f'src="{data_uri(png)}"><div class="rf"></div></div>'
                     f'<p class="note">{html.escape(caption)}: {w}x{h} px</p>')
        return self

    def picture(self, image: Any, caption: str, *, anchor: str | None = None) -> Section:
        """A picture (a Pillow image: a filter bank, a contact sheet, a chart) with its caption."""
        from featcli.render.page_maps import data_uri, png_bytes

        uri = data_uri(png_bytes(image))
        self.blocks.append(Block(f'<figure class="pic"{_id(anchor)}><img alt="{html.escape(caption)}" src="{uri}">'
                                 f"<figcaption>{html.escape(caption)}</figcaption></figure>", caption))
        return self

    def curves(self, title: str, series: Mapping[str, Sequence[tuple[float, float]]], *, x_label: str = "epoch",
               percent: bool = False) -> Section:
        """Lines of ``(x, y)`` points as an inline SVG chart, each point with its value as a tooltip."""
        from featcli.render.page_svg import curves_svg

        self.blocks.append(Block(curves_svg(title, series, x_label=x_label, percent=percent)))
        return self

    def fragment(self, blocks: Sequence[Block], *, side: bool = True) -> str:
        """The section's HTML with ``blocks`` (and its input picture unless ``side`` is false)."""
        first = next((i for i, b in enumerate(blocks) if b.maps), len(blocks))
        inner = "".join(b.html for b in blocks[:first])
        rest = "".join(b.html for b in blocks[first:])
        if side and self.side is not None:  # the input picture stays in view beside the maps (the receptive fields)
            rest = f'<div class="layout"><div class="side">{self.side}</div><div class="main">{rest}</div></div>'
        inner += rest
        return f"<section{_id(self.anchor)}><h2>{html.escape(self.title)}</h2>{inner}</section>"


def _id(anchor: str | None) -> str:
    return f' id="{html.escape(anchor)}"' if anchor else ""


class Page:
    """The page: sections in order, within ``budget`` bytes (see the module docstring)."""

    def __init__(self, title: str, *, command: str = "", budget: int = BUDGET, notes: Sequence[str] = ()) -> None:
        self.title, self.command, self.budget = title, command, budget
        self.notes = list(notes)
        self.parts: list[str] = []
        self.left_out: list[str] = []
        self.has_maps = False  #: some map grid is on the page (then the page says how its values are stored)
        here = Path(__file__).parent
        # The style sheet, the script and the page's head and notes (a few kB) count against the budget.
        self.size = sum((here / f).stat().st_size for f in ("page.css", "page.js")) + 4096

    def add(self, section: Section) -> None:
        """Add ``section``; its grids and pictures past the budget are left out (and named on the page), and its
        input picture with them when none of its grids is kept. Text and tables are always kept."""
        side = _nbytes(section.side) if section.side is not None else 0
        with_side = side > 0 and self.size + side <= self.budget
        self.size += side if with_side else 0
        kept = []
        for b in section.blocks:
            n = _nbytes(b.html)
            if b.what is not None and self.size + n > self.budget:
                line = f"{section.title}: {b.what}"
                self.left_out.append(line)
                self.size += _nbytes(line) + 9  # its <li> on the page
                continue
            kept.append(b)
            self.size += n
        if with_side and not any(b.maps for b in kept):  # no maps to hover: no input picture either
            self.size -= side
            with_side = False
        self.has_maps = self.has_maps or any(b.maps for b in kept)
        part = section.fragment(kept, side=with_side)
        self.size += _nbytes(part) - sum(_nbytes(b.html) for b in kept) - (side if with_side else 0)
        self.parts.append(part)

    def add_failure(self, title: str, reason: str) -> None:
        """An input with no section (it failed, or was skipped): its one line."""
        self.parts.append(f'<section><h2>{html.escape(title)}</h2><p class="left-out">{html.escape(reason)}</p>'
                          "</section>")

    def html(self) -> str:
        """The whole page as text."""
        here = Path(__file__).parent
        style = (here / "page.css").read_text(encoding="utf-8")
        script = (here / "page.js").read_text(encoding="utf-8")
        shown = [*self.notes, *([QUANTISED] if self.has_maps else [])]
        notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in shown)
        left = ""
        if self.left_out:
            items = "".join(f"<li>{html.escape(w)}</li>" for w in self.left_out)
            left = (f'<div class="left-out" id="left-out">Left out to keep this page under its size budget '
                    f"({self.budget / 1e6:g} MB): {len(self.left_out)} part{'s' if len(self.left_out) != 1 else ''}"
                    f" (use fewer --stages, --layers or images, or a smaller --tile-px)<ul>{items}</ul></div>")
        command = f'<p class="meta"><code>{html.escape(self.command)}</code></p>' if self.command else ""
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
                "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
                f"<title>{html.escape(self.title)}</title><style>{style}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>{command}{notes}{left}{''.join(self.parts)}"
                '<div id="zoom"><img alt=""><div class="val"></div></div>'
                f"<script>{script}</script></body></html>\n")

    def write(self, path: str, *, force: bool = False, inputs: Iterable[str] = ()) -> Path:
        """Write the page to ``path`` atomically (refused over an input, or over a file without ``force``)."""
        from featcli.io.outputs import atomic_write

        text = self.html().encode("utf-8")
        return atomic_write(path, lambda fh: fh.write(text), force=force, inputs=list(inputs))


def _nbytes(text: str) -> int:
    """The UTF-8 size of ``text`` (the page's size is counted in bytes)."""
    return len(text.encode("utf-8")) if not text.isascii() else len(text)


def check_page(path: str, *, force: bool = False, inputs: Iterable[str] = ()) -> None:
    """Refuse, before any work, a page name that cannot be written: not ``.html``/``.htm``, an input, an existing
    file without ``--force``, a missing folder."""
    from featcli.errors import UsageError
    from featcli.io.outputs import check_output

    if not path.lower().endswith((".html", ".htm")):
        raise UsageError(f"--html {path}: the page is HTML; give a name ending in .html")
    check_output(path, force=force, inputs=list(inputs))
