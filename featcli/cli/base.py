"""The Typer application object, the one place where errors become exit codes, and the lean default."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.models import DefaultPlaceholder

try:  # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    from typer._click import core as _click_core
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import core as _click_core  # type: ignore[no-redef]
    from click import exceptions as _click_exc  # type: ignore[no-redef]

from featcli.cli.lean import LeanCommand, LeanGroup
from featcli.errors import FeatcliError

_ARGS: list[str] = []


def command_line() -> str:
    """The command line of this invocation, shell-quoted (recorded in output metadata)."""
    import shlex

    return " ".join(shlex.quote(a) for a in ["featcli", *_ARGS])


def report_error(message: str) -> None:
    """Print one red ``featcli: error:`` line on stderr."""
    from featcli.cli.console import err_console, styled

    err_console().print(styled(("featcli: error:", "bold red"), " ", one_line(message)), soft_wrap=True)


def report_note(message: str) -> None:
    """Print one ``featcli: note:`` line on stderr (something the user should know; not an error)."""
    from featcli.cli.console import err_console, styled

    err_console().print(styled(("featcli: note:", "bold yellow"), " ", one_line(message)), soft_wrap=True)


def one_line(text: str) -> str:
    """``text`` on one line: newlines and other control characters shown escaped, never acted on; a word of
    more than 200 characters (an echoed argument) shortened to its ends.

    >>> one_line("a\\nb\\x1b[31m")
    'a\\\\nb\\\\x1b[31m'
    """
    from featcli.stages.grammar import clean_message

    return clean_message(text)


def usage_line(exc: _click_exc.ClickException) -> str:
    """Click's usage error as one line: the command, what is wrong, and where the valid forms are.

    Click's own message already names the valid choices (``'x' is not one of 'a', 'b'``) and close option
    names (``Did you mean --force?``); this adds the command and the help to read, instead of Typer's
    boxed panel with a usage block above it.
    """
    message = " ".join(exc.format_message().split()).rstrip(".")
    message = re.sub(r"\(Possible options: (.*)\)$", r"(did you mean \1?)", message)
    ctx = getattr(exc, "ctx", None)
    if ctx is None or not isinstance(exc, _click_exc.UsageError):
        return message
    path = ctx.command_path
    if message[:1].isupper() and message[1:2].islower():  # "No such option" -> "no such option"
        message = message[0].lower() + message[1:]
    return f"{message}; see '{path} --help'"


class FeatcliGroup(LeanGroup):
    """Typer group that turns :class:`FeatcliError` into one line on stderr and its exit code.

    Click's own usage errors keep exit code 2. Anything unexpected is reported on one line too
    (set ``FEATCLI_DEBUG=1`` to see the traceback), so users never get a stack dump.
    """

    def main(self, args: Any = None, *a: Any, **kw: Any) -> Any:
        global _ARGS
        _ARGS = list(sys.argv[1:] if args is None else args)
        if kw.get("standalone_mode", True) is False:
            return super().main(args, *a, **kw)
        kw["standalone_mode"] = False
        try:
            code = super().main(args, *a, **kw)
        except _click_exc.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `featcli` or `featcli kernels` alone: the help
                from typer import rich_utils

                rich_utils.rich_format_error(exc)
            else:
                report_error(usage_line(exc))
            code = exc.exit_code
        except typer.Abort:
            report_error("interrupted")
            code = 130
        sys.exit(code or 0)

    def invoke(self, ctx: _click_core.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FeatcliError as exc:
            report_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, _click_exc.ClickException):
            raise
        except KeyboardInterrupt:
            report_error("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # `featcli ... | head`: the reader left; nothing to report.
            _silence_stdout()
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - last line of defence, never a traceback
            if os.environ.get("FEATCLI_DEBUG"):
                raise
            report_error(f"internal error: {type(exc).__name__}: {exc} (set FEATCLI_DEBUG=1 for a traceback)")
            raise typer.Exit(1) from None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


app = typer.Typer(
    cls=FeatcliGroup,
    name="featcli",
    help=(
        "See what convolution and pooling do to real images, and answer CNN shape questions.\n\n"
        "Example: featcli run sample:shapes -k sobel_x -k sobel_y --pool max:k=2 -o grid.png"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        from featcli import __version__

        typer.echo(f"featcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """featcli: CNN feature maps and shapes from the shell."""


def _unset(cls: Any, typer_default: type) -> bool:
    """True when a registration's ``cls`` is Typer's default (not given, or Typer's own class)."""
    value = cls.value if isinstance(cls, DefaultPlaceholder) else cls
    return value is None or value is typer_default


def lean_by_default(typer_app: typer.Typer) -> typer.Typer:
    """Give every command and sub-group of ``typer_app`` that did not choose a class the lean one.

    Commands become :class:`~featcli.cli.lean.LeanCommand` and sub-groups (``app.add_typer(kernels_app)``)
    :class:`~featcli.cli.lean.LeanGroup`, sub-apps' commands included, so no command module opts in and none
    imports pydantic to parse plain options. Typer offers no default to set: ``Typer.command`` turns
    ``cls=None`` into ``TyperCommand`` when it registers, and a sub-app made with ``typer.Typer()`` registers
    on itself. Its registrations are plain records (``CommandInfo.cls``, ``TyperInfo.cls``) read only when the
    Click command is built, so :mod:`featcli.cli` rewrites them here each time it hands out the app (after
    importing the command modules). Idempotent. A command that wants typer's pydantic coercion passes a
    ``TyperCommand`` subclass as ``cls``.
    """
    for command in typer_app.registered_commands:
        if _unset(command.cls, TyperCommand):
            command.cls = LeanCommand
    for group in typer_app.registered_groups:
        sub = group.typer_instance
        if sub is None or isinstance(sub, DefaultPlaceholder):
            continue
        chosen = (group.cls, getattr(sub.registered_callback, "cls", None), sub.info.cls)
        if all(_unset(c, TyperGroup) for c in chosen):
            group.cls = LeanGroup
        lean_by_default(sub)
    return typer_app
