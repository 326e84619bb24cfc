"""How ``--help`` reads: paragraphs flowed to the terminal, and value metavars users know (not Python types).

Typer keeps every single line break of a docstring after its first paragraph, so a paragraph wrapped at 110
columns in the source breaks mid-sentence on a 100-column terminal; and Typer >= 0.24 shows each option's
Python type (``<list[str]>``, ``<int range>``, ``<bool>`` on flags). :func:`reflow` joins a paragraph's
lines (lines that start with blanks, such as examples, stay lines of their own); :func:`value_label` gives
flags nothing, choices as ``a|b|c``, numbers ``N`` and text ``TEXT``.
"""

from __future__ import annotations

import enum
import functools
import typing
from typing import Any

__all__ = ["label_param", "polish", "reflow", "usage_pieces", "value_label"]


def reflow(text: str | None) -> str | None:
    """Join the lines of each paragraph; indented lines (examples) and ``\\b`` paragraphs stay as written.

    >>> reflow("One line\\nand the next.\\n\\n  featcli run x\\n  featcli run y")
    'One line and the next.\\n\\n  featcli run x\\n  featcli run y'
    """
    if not text:
        return text
    import inspect

    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        if para.startswith("\b"):
            out.append(para)
            continue
        lines: list[str] = []
        for line in para.split("\n"):
            if lines and not line.startswith((" ", "\t")) and not lines[-1].startswith((" ", "\t")):
                lines[-1] = f"{lines[-1]} {line.strip()}"
            else:
                lines.append(line)
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _leaf(annotation: Any) -> Any:
    if typing.get_origin(annotation) is list:
        (annotation,) = typing.get_args(annotation)
    return annotation


def value_label(param: Any, ctx: Any) -> str | None:
    """What ``--help`` shows after an option's name: nothing for flags, ``a|b|c``, ``N``, ``X`` or ``TEXT``."""
    if getattr(param, "param_type_name", "") == "argument":
        return None  # its name column already shows the metavar
    if getattr(param, "metavar", None) is not None:
        return str(param.metavar)
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    desc = getattr(param, "type_descriptor", None)
    leaf = _leaf(desc.annotation) if desc is not None else None
    if isinstance(leaf, type) and issubclass(leaf, enum.Enum):
        label = "|".join(str(m.value) for m in leaf)
        if len(label) > 20:  # too long for the column: a word, the help lists the choices
            longest = max(getattr(param, "opts", ["--value"]), key=len)
            label = longest.lstrip("-").rsplit("-", 1)[-1].upper()
    elif leaf is int:
        label = "N"
    elif leaf is float:
        label = "X"
    else:
        label = "TEXT"
    return f"{label}..." if getattr(param, "nargs", 1) != 1 else label


def usage_pieces(pieces: list[str]) -> list[str]:
    """Typer writes arguments with their own metavar as ``{INPUT}`` and ``[STAGE...]...``: unwrap them.

    >>> usage_pieces(["[OPTIONS]", "{IMAGE... [STAGE...]}...", "{INPUT}", "[STAGE...]..."])
    ['[OPTIONS]', 'IMAGE... [STAGE...]', 'INPUT', '[STAGE...]']
    """
    out = []
    for p in pieces:
        if p.endswith("...") and p[:-3].endswith(("}", "]")) and "..." in p[:-3]:
            p = p[:-3]
        if p.startswith("{") and p.endswith("}"):
            p = p[1:-1]
        out.append(p)
    return out


def polish(command: Any) -> None:
    """Flow ``command``'s help paragraphs and give each of its parameters :func:`value_label`."""
    command.help = reflow(command.help)
    for param in command.params:
        label_param(param)


def label_param(param: Any) -> Any:
    """Make ``param`` show :func:`value_label` in ``--help`` (Typer asks it for ``display_type_rich``)."""
    if hasattr(param, "display_type_rich"):
        param.display_type_rich = functools.partial(value_label, param)
    return param
