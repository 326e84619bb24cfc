"""Where each input's outputs go: stage selection, name templates, and the checks made before any compute.

A whole run is checked before any image is decoded (:func:`check_run`): no two outputs are the same file, no
output is an input of the run (not even with ``--force``), and ``--name`` stays inside ``--out-dir``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from featcli.errors import OutputError, UsageError
from featcli.io.outputs import InputSet, check_output, path_key
from featcli.run.config import RunConfig
from featcli.shape.report import ShapeReport

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def select_stages(text: str | None, n: int, default: str) -> list[int]:
    """``last`` | ``all`` | ``1,3`` | ``2-4`` (1-based, as shown in the table) -> sorted indices."""
    text = (text or default).strip().lower()
    if text == "last":
        return [n]
    if text == "all":
        return list(range(1, n + 1))
    picked: set[int] = set()
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if not m:
            raise UsageError(f"--stages {text!r}: expected last, all, or numbers and ranges like 1,3-4")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= lo <= hi <= n:
            raise UsageError(f"--stages {text!r}: stages are numbered 1..{n}")
        picked.update(range(lo, hi + 1))
    return sorted(picked)



_FIELDS = "{stem} {name} {ext} {parent} {n} (and {index} {op} {stage}, or a network's {layer}, in --name)"


def fill(template: str, src: str, *, stem: str | None = None, n: int = 0, **stage: object) -> str:
    """Fill an output name template for input ``src``: ``{stem}``, ``{name}``, ``{ext}``, ``{parent}``,
    ``{n}`` (input number) and, for per-stage files, ``{index}``, ``{op}``, ``{stage}``.

    >>> fill("out/{stem}_s{index}_{op}.png", "a/photo.jpg", index=2, op="relu")
    'out/photo_s2_relu.png'
    """
    p = Path(src) if src not in ("-", "<stdin>") else Path("stdin")
    named = {"stem": stem or p.stem, "name": p.name, "ext": p.suffix.lstrip("."), "parent": p.parent.name}
    values = {**{k: _one_name(v) for k, v in named.items()}, "n": n, **stage}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"bad output name template {template!r} ({exc}); fields: {_FIELDS}") from None


def _one_name(value: str) -> str:
    """A value taken from an input's name, made one plain path component: separators (both kinds, on every
    OS) become ``_``, and ``.``/``..`` (a ``{parent}`` of ``a/../x.png``) cannot climb out of a folder."""
    value = value.replace("/", "_").replace("\\", "_").replace("\0", "_")
    return "_" * len(value) if value in (".", "..") else value


def in_out_dir(out_dir: str, name: str, template: str) -> str:
    """``out_dir/name``, refused unless it stays inside ``out_dir``: no absolute name, no ``..`` above it, and
    no sub-folder that is a symbolic link leading out of it (the folders are compared by their real paths).

    >>> in_out_dir("maps", "a/../b.png", "{stem}")
    'maps/b.png'
    """
    norm = os.path.normpath(name)
    if os.path.isabs(name) or os.path.splitdrive(name)[0] or norm == ".." or norm.startswith(".." + os.sep):
        raise UsageError(f"--name {template!r} gives {name!r}, which is outside --out-dir {out_dir!r}; "
                         "give a name inside the folder")
    link = _link_out(out_dir, norm)
    if link is not None:
        raise OutputError(f"--name {template!r} gives {name!r}, which leads outside --out-dir {out_dir!r} through "
                          f"the symbolic link {link!r}; featcli writes only inside the folder")
    return os.path.join(out_dir, norm)


def check_inside(out_dir: str, path: str) -> None:
    """Just before writing ``path`` (made by :func:`in_out_dir`): refuse it if a folder on its way has become
    a symbolic link out of ``out_dir`` since the run's check."""
    link = _link_out(out_dir, os.path.relpath(path, out_dir))
    if link is not None:
        raise OutputError(f"leads outside --out-dir {out_dir!r} through the symbolic link {link!r} (made while "
                          "featcli ran); featcli writes only inside the folder", path=path)


def _link_out(out_dir: str, norm: str) -> str | None:
    """The sub-folder of ``out_dir`` on the way to ``norm``'s folder that is a symbolic link to a folder outside
    ``out_dir`` (real paths compared), or None. ``out_dir`` itself may be a link: it is the root."""
    folder = os.path.dirname(norm)
    if not folder:
        return None
    root = os.path.realpath(out_dir)
    real = os.path.realpath(os.path.join(out_dir, folder))
    if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
        return None
    probe = out_dir
    for part in folder.split(os.sep):
        probe = os.path.join(probe, part)
        if os.path.islink(probe):
            return probe
    return os.path.join(out_dir, folder)  # pragma: no cover - moved while checked: name the folder


def is_template(name: str | None) -> bool:
    """True when an output name has ``{...}`` fields (one file per input)."""
    return bool(name) and "{" in str(name)


@dataclass(frozen=True)
class Destinations:
    """Where one input's outputs go, decided (and checked) before any compute."""

    output: str | None
    stage_files: dict[int, str]  #: stage index -> PNG path (``--out-dir``)
    save: str | None
    shown: list[int]
    saved: list[int]
    npy_hint: str = "use --stages N, or .npz"  #: how to pick one map for a .npy
    paged: list[int] = field(default_factory=list)  #: ``--html``: the stages whose maps the page shows

    @property
    def all(self) -> list[str]:
        return [p for p in (self.output, *self.stage_files.values(), self.save) if p]

    @property
    def keep(self) -> set[int]:
        return set(self.shown) | set(self.stage_files) | set(self.saved) | set(self.paged)


def destinations(cfg: RunConfig, report: ShapeReport, src: str, *, stem: str | None = None, n: int = 0) -> Destinations:
    """The files ``src`` will produce under ``cfg`` (templates filled, stages selected)."""
    count = len(report.stages)
    every = select_stages(cfg.stages, count, "all")  # validates --stages even when nothing is written
    spatial = {row.index for row in report.stages if len(row.out_shape) == 4}
    stage_files: dict[int, str] = {}
    if cfg.out_dir:
        for row in report.stages:
            if row.index in every and row.index in spatial:
                name = fill(cfg.name_template, src, stem=stem, n=n, index=row.index, op=row.op,
                            stage=f"s{row.index}_{row.op}")
                name = name if name.lower().endswith(".png") else name + ".png"
                stage_files[row.index] = in_out_dir(cfg.out_dir, name, cfg.name_template)
    output = fill(cfg.output, src, stem=stem, n=n) if cfg.output else None
    save = fill(cfg.save, src, stem=stem, n=n) if cfg.save else None
    shown = select_stages(cfg.stages, count, "last") if output else []
    if output and not any(i in spatial for i in shown):
        raise OutputError("the selected stages have no spatial maps to draw (flatten/linear); pick others with "
                          "--stages", path=output)
    saved = every if save else []
    if save and save.lower().endswith(".npy") and len(saved) != 1:
        raise OutputError(f".npy holds one stage; {len(saved)} selected (use --stages N, or .npz)", path=save)
    paged = [i for i in every if i in spatial] if cfg.html else []
    return Destinations(output, stage_files, save, shown, saved, paged=paged)


def labelled(dest: Destinations) -> list[tuple[str, str]]:
    """``(what, path)`` of every output of one input, ``what`` as the user asked for it."""
    out = [("-o", dest.output)] if dest.output else []
    out += [(f"stage {i} (--out-dir)", p) for i, p in dest.stage_files.items()]
    return out + ([("--save", dest.save)] if dest.save else [])


def check_destinations(dest: Destinations, cfg: RunConfig, src: str, inputs: InputSet | None = None) -> None:
    """Refuse before computing: two outputs that are one file, existing files without --force, an input
    file of the run (``inputs``, default ``src`` alone), a missing folder."""
    check_unique([(src, dest)])
    for path in dest.all:
        check_output(path, force=cfg.force, inputs=inputs if inputs is not None else [src])


def check_unique(dests: Sequence[tuple[str, Destinations]]) -> None:
    """Refuse two outputs of one run that are the same file (a usage error: the names cannot work)."""
    seen: dict[str, tuple[str, str]] = {}
    for src, dest in dests:
        for what, path in labelled(dest):
            key = path_key(path)
            if key not in seen:
                seen[key] = (src, what)
                continue
            other_src, other = seen[key]
            opt = "--name" if "out-dir" in what else what
            if other_src != src:
                hint = f"put {{stem}} in the {opt} template"
            elif "out-dir" in what and "out-dir" in other:
                hint = "put {index} or {stage} in the --name template"
            else:
                hint = "give them different names"
            raise UsageError(f"two outputs of this run are the same file {path!r}: {other} of {other_src} and "
                             f"{what} of {src}; {hint}")


def check_run(cfg: RunConfig, report: ShapeReport, paths: Sequence[str], stems: Sequence[str],
              inputs: InputSet) -> list[Destinations]:
    """Every input's destinations, checked together before any work: no two are one file, none is an
    input of the run (even with ``--force``). ``report`` is any input's shape report: which stages make files
    depends on the stack only. Existing files are left to each image's own check (a ``failed`` record)."""
    dests = [destinations(cfg, report, path, stem=stem, n=i)
             for i, (path, stem) in enumerate(zip(paths, stems, strict=True))]
    check_unique(list(zip(paths, dests, strict=True)))
    for src, dest in zip(paths, dests, strict=True):
        refuse_inputs(src, dest, inputs)
    return dests


def refuse_inputs(src: str, dest: Destinations, inputs: InputSet) -> None:
    """Refuse an output of ``src`` that is an input file of the run (even with ``--force``)."""
    for what, path in labelled(dest):
        hit = inputs.find(path)
        if hit is not None:
            whose = "that input itself" if path_key(hit) == path_key(src) else f"{src}; it is input {hit}"
            raise OutputError(f"refusing to overwrite an input file of this run ({what} of {whose}); "
                              "inputs are never overwritten, even with --force", path=path)


def safe_name(layer: str) -> str:
    """A layer name as a file-name part (``{layer}`` in ``--name``): ``/stem/stem.0/Conv`` -> ``stem_stem.0_Conv``.

    >>> safe_name("/stem/stem.0/Conv"), safe_name("block.conv1:conv2d_1"), safe_name("head[0]")
    ('stem_stem.0_Conv', 'block.conv1_conv2d_1', 'head_0')
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", layer).strip("._") or "layer"


def temp_files(path: str | os.PathLike[str]) -> list[str]:
    """The hidden temp files (``.NAME.XXXX.part``, made by :class:`featcli.io.outputs.PendingOutputs`) beside
    the output ``path`` that a writer stopped before publishing may have left: what a retried Ray part or the
    parent of a dead ``--processes`` worker removes."""
    import glob

    p = Path(path)
    return glob.glob(os.path.join(glob.escape(str(p.parent)), f".{glob.escape(p.name)}.*.part"))
