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
from featcli.stages.spec import SourcedText, join_split_stages, stack_spans

if TYPE_CHECKING:
    from pathlib import Path

# pathlib, difflib and featcli.resources are imported in the functions that read stack files: a stack of plain
# stages (every `featcli shape` query without @) never pays for them.

PREFIX = "@"
SUFFIX = ".txt"
MAX_DEPTH = 8
#: Bigger files are not stacks (a wrong path to an image or a checkpoint).
MAX_BYTES = 1 << 20
#: How many stages a command line's stacks may expand to in all: files that name each other many times
#: (``@b @b @b ...``, eight deep) would otherwise multiply into billions.
MAX_STAGES = 10_000
#: How many distinct stack files one command line may read (each at most MAX_BYTES).
MAX_FILES = 256


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
    try:
        path = Path(name).expanduser()
        if path.is_file():
            return path
    except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a NUL byte, no home directory
        raise SpecError(f"stack file {shorten(name)}: {getattr(exc, 'strerror', None) or 'not a usable path'}") \
            from None
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
    """The stage texts of a stack file (comments removed), before any nested ``@`` is expanded.

    Each is a :class:`featcli.stages.spec.SourcedText`: a stage that does not parse is reported by its file,
    line and column, never by its text (a file named by mistake, ``@.env``, must not be printed).
    """
    path = stack_path(ref)
    shown = shorten(str(path), 200)
    try:
        with path.open("rb") as f:  # at most MAX_BYTES + 1: st_size is 0 for /proc files and pipes
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read stack file {shown}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_BYTES:
        raise SpecError(f"stack file {shown} is over {MAX_BYTES // 1024} KiB: not a stack")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"stack file {shown} is not UTF-8 text (byte {exc.start + 1}): not a stack") from None
    lines = [line.partition("#")[0] for line in text.splitlines()]
    body = "\n".join(lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)
    stages: list[str] = []
    row = 0
    for number, (a, b) in enumerate(stack_spans(body), 1):
        if number > MAX_STAGES:
            raise SpecError(f"stack file {shown} has more than {MAX_STAGES:,} stages")
        while starts[row + 1] <= a:
            row += 1
        stages.append(SourcedText(body[a:b], str(path), row + 1, a - starts[row] + 1, number))
    if not stages:
        raise SpecError(f"stack file {shown} has no stages")
    return stages


def expand(tokens: Sequence[str]) -> list[str]:
    """Stage texts from command-line tokens: each ``@STACK`` replaced by its stages, split branches joined.

    A file named again is read once; at most :data:`MAX_FILES` files and :data:`MAX_STAGES` stages in all.

    Raises:
        SpecError: a stack file that cannot be read, files nested more than :data:`MAX_DEPTH` deep, more than
            :data:`MAX_FILES` files or :data:`MAX_STAGES` stages.
    """
    out: list[str] = []
    _expand(join_split_stages(tokens), 0, out, {})
    return out


def _expand(tokens: Sequence[str], depth: int, out: list[str], files: dict[str, list[str]]) -> None:
    # a file's stages are already whole (split_stack keeps brackets together); they are not joined again
    for tok in tokens:
        if tok.startswith(PREFIX):
            if depth >= MAX_DEPTH:
                raise SpecError(f"stack files name each other more than {MAX_DEPTH} deep (at {shorten(tok)})")
            key = str(stack_path(tok))
            stages = files.get(key)
            if stages is None:
                if len(files) >= MAX_FILES:
                    raise SpecError(f"the stacks name more than {MAX_FILES} stack files")
                stages = files[key] = read_stack(tok)
            _expand(stages, depth + 1, out, files)
        else:
            if len(out) >= MAX_STAGES:
                raise SpecError(f"the stacks expand to more than {MAX_STAGES:,} stages")
            out.append(tok)
