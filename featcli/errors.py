"""The one error hierarchy of featcli.

Every failure the user can cause or meet is a :class:`FeatcliError`. The CLI catches the base class
only, prints ``featcli: error: <message>`` as one line on stderr and exits with ``exit_code``:
1 for bad input or a runtime failure, 2 for bad usage (as Click does for its own usage errors).
"""

from __future__ import annotations

from typing import Any


class FeatcliError(Exception):
    """Base class of every error featcli reports to the user."""

    exit_code: int = 1

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.message = message
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


def printable(text: str) -> str:
    """``text`` with its control characters (newline, ESC, ...) written as escapes: a name that comes from a
    file (an ONNX node, a module path) shown in a table or a message, never acted on by the terminal.
    Idempotent: the result has no control character left to escape.

    >>> printable("x\\nfeatcli: error: forged\\x1b[31m")
    'x\\\\nfeatcli: error: forged\\\\x1b[31m'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def about(exc: FeatcliError, path: str) -> FeatcliError:
    """``exc`` naming the input ``path`` it is about (a refused stage says which image of a batch), in place.

    >>> str(about(FeatcliError("stage 1 'conv': too small"), "a.png"))
    "a.png: stage 1 'conv': too small"
    """
    if exc.path is None and not str(exc).startswith(f"{path}: "):
        exc.path = path
        exc.args = (f"{path}: {exc}",)
    return exc


def failure_message(path: str, exc: BaseException) -> str:
    """The message of one input's failure: featcli's own errors as they are, anything else as an internal
    error naming the input (its traceback on stderr when ``FEATCLI_DEBUG`` is set), so a batch reports a
    featcli bug as that input's failure and goes on.

    >>> failure_message("a.png", KeyError("x"))
    "a.png: internal error: KeyError: 'x' (set FEATCLI_DEBUG=1 for a traceback)"
    """
    if isinstance(exc, FeatcliError):
        return str(exc)
    import os

    if os.environ.get("FEATCLI_DEBUG"):
        import sys
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return f"{path}: internal error: {type(exc).__name__}: {exc} (set FEATCLI_DEBUG=1 for a traceback)"


class UsageError(FeatcliError):
    """The command line itself is wrong (bad option value, bad syntax)."""

    exit_code = 2


class ImageLoadError(FeatcliError):
    """An input image cannot be read: missing, not an image, truncated, too large, bad mode..."""


class DeviceError(FeatcliError):
    """The requested compute device does not exist on this machine."""


class SpecError(UsageError):
    """A stage spec or shape string has bad syntax (unknown op or key, bad number)."""


class ShapeError(FeatcliError):
    """A well-formed stack that torch would refuse (output size < 1, bad groups, ...).

    ``partial``: the shape report of the stages before the refused one (a ``ShapeReport``), when the shape
    engine raised it, so that ``featcli shape`` can still show them.
    """

    partial: Any = None


class KernelError(FeatcliError):
    """A kernel name, parametric spec, inline matrix or kernel file is invalid."""


class WeightsError(FeatcliError):
    """A checkpoint or weight tensor cannot be loaded safely or used as a conv weight."""


class OutputError(FeatcliError):
    """An output cannot be written (exists without --force, is an input, bad extension, ...)."""


class StageError(FeatcliError):
    """A stage failed while running on a real tensor."""


class BudgetError(FeatcliError):
    """A stage's output or weights would need more memory than the run's budget (``--max-memory``)."""


class ModelError(FeatcliError):
    """A ``--model`` cannot be imported, loaded or run (not a module, malformed file, refused archive...)."""
