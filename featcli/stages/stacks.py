"""Stacks as files: ``@resnet18`` (an example shipped with featcli) or ``@path/to/net.txt`` stands for its stages.

A stack file holds stages separated by spaces or newlines; ``#`` starts a comment to the end of the line, and a
side branch ``add:a(conv:k=1 bn)`` may span lines. A file may name another with ``@`` (up to
:data:`MAX_DEPTH` deep). The examples live in ``stacks/`` (:func:`featcli.resources.stacks_dir`).

:func:`expand` turns a command line's stage tokens into stage texts for :func:`featcli.stages.spec.parse_stage`:
stack files expanded, and a side branch the shell split at its spaces (``'add:a(conv:k=1' 'bn)'``) made whole.
Pure stdlib.

>>> expand(["@lenet5"])[:3]
['conv:out=6,k=5', 'tanh', 'avgpool:k=2']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from featcli.errors import SpecError
from featcli.stages.grammar import shorten
from featcli.stages.spec import join_split_stages, split_stack

if TYPE_CHECKING:
    from pathlib import Path

# pathlib, difflib and featcli.resources are imported in the functions that read stack files: a stack of plain
# stages (every `featcli shape` query without @) never pays for them.

PREFIX = "@"
SUFFIX = ".txt"
MAX_DEPTH = 8
#: Bigger files are not stacks (a wrong path to an image or a checkpoint).
MAX_BYTES = 1 << 20


def stack_names() -> list[str]:
    """The example stacks shipped with featcli (``resnet18``, ...), sorted."""
    from featcli.resources import stacks_dir

    try:
        return sorted(p.stem for p in stacks_dir().glob(f"*{SUFFIX}"))
    except Exception:  # noqa: BLE001 - a broken installation: no examples, and the error says where it looked
        return []


def stack_path(ref: str) -> Path:
    """``@NAME`` -> the shipped example; ``@PATH`` (an existing file, or text with ``/`` or a suffix) -> that file.

    Raises:
        SpecError: no such example or file.
    """
    import difflib
    from pathlib import Path

    from featcli.resources import stacks_dir

    name = ref[len(PREFIX):] if ref.startswith(PREFIX) else ref
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if "/" in name or "\\" in name or path.suffix:
        raise SpecError(f"stack file {shorten(name)} not found")
    shipped = stacks_dir() / f"{name}{SUFFIX}"
    if shipped.is_file():
        return shipped
    names = stack_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean @{close[0]}?)" if close else ""
    raise SpecError(f"no stack named {shorten(name)}{hint}; featcli ships {', '.join('@' + n for n in names)}, "
                    "or give a file: @path/to/stack.txt")


def read_stack(ref: str) -> list[str]:
    """The stage texts of a stack file (comments removed), before any nested ``@`` is expanded."""
    path = stack_path(ref)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SpecError(f"stack file {shorten(str(path))} is over {MAX_BYTES // 1024} KiB: not a stack")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read stack file {shorten(str(path))}: {exc}") from None
    lines = [line.partition("#")[0] for line in text.splitlines()]
    stages = split_stack("\n".join(lines))
    if not stages:
        raise SpecError(f"stack file {shorten(str(path))} has no stages")
    return stages


def expand(tokens: Sequence[str], depth: int = 0) -> list[str]:
    """Stage texts from command-line tokens: each ``@STACK`` replaced by its stages, split branches joined."""
    out: list[str] = []
    for tok in join_split_stages(tokens):
        if tok.startswith(PREFIX):
            if depth >= MAX_DEPTH:
                raise SpecError(f"stack files name each other more than {MAX_DEPTH} deep (at {shorten(tok)})")
            out.extend(expand(read_stack(tok), depth + 1))
        else:
            out.append(tok)
    return out
