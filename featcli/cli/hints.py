"""Arguments that look like one thing written as another: say what they look like, before any work.

``featcli run photo.jpg sobel_x`` takes ``sobel_x`` for an image path, and without these checks the user
reads ``-o names one file`` or ``no such file``. Each check runs only on tokens that are not existing
files, so a file that happens to be called ``sobel_x`` still works.
"""

from __future__ import annotations

import difflib
import re
import sys

from featcli.errors import UsageError

_KEY_VALUE = re.compile(r"^[A-Za-z_]\w*=")
_WORD = re.compile(r"^[A-Za-z][\w-]*$")


def _looks_like_path(token: str) -> bool:
    return "/" in token or "\\" in token or bool(re.search(r"\.[A-Za-z0-9]{2,5}$", token)) or token == "-"


def _kernel_names(kernels_dir: str | None) -> set[str]:
    import importlib

    from featcli.kernels.families import FAMILIES

    library = importlib.import_module("featcli.kernels.library")
    try:
        names = set(library.library(kernels_dir))
    except Exception:  # noqa: BLE001 - a broken user library is reported where it is used, not here
        names = set()
    return names | set(FAMILIES)


def check_inputs(inputs: list[str], *, kernels_dir: str | None = None) -> None:
    """Refuse input tokens that are kernels or misspelt ops rather than images (none of them exist)."""
    from featcli.io.inputs import exists
    from featcli.resources import SAMPLE_PREFIX
    from featcli.stages.registry import valid_ops

    kernels: set[str] | None = None
    for tok in inputs:
        if exists(tok) or _looks_like_path(tok) or tok.startswith(SAMPLE_PREFIX):
            continue
        head = tok.partition(":")[0].partition("(")[0]
        if kernels is None:
            kernels = _kernel_names(kernels_dir)
        if head in kernels:
            raise UsageError(f"{tok!r} is a kernel, not an image: use -k {tok} or the stage conv:w={tok}")
        close = difflib.get_close_matches(head.lower(), valid_ops(), n=1, cutoff=0.6)
        if _WORD.match(head) and close:
            raise UsageError(f"unknown op {head!r} (did you mean {close[0]}?); {tok!r} is not a file either")
        if _KEY_VALUE.match(tok):
            raise UsageError(f"{tok!r} looks like a stage's key=value, but no op comes before it "
                             "(write op:key=value, e.g. conv:out=8,k=3)")


def check_stages(stages: list[str]) -> None:
    """``conv out=5`` (a space instead of ':') -> say ``conv:out=5``."""
    from featcli.stages.spec import split_key_hint

    hint = split_key_hint(stages)
    if hint is not None:
        raise UsageError(hint)


def check_stdin(inputs: list[str]) -> None:
    """``-`` reads an image from stdin: refuse when stdin is a terminal (nothing would ever arrive)."""
    if "-" in inputs and sys.stdin is not None and sys.stdin.isatty():
        raise UsageError("'-' reads an image from stdin, but stdin is a terminal; pipe one in "
                         "(featcli run - ... < photo.jpg) or name the file")
