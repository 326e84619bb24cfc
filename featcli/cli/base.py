"""The Typer application object and the one place where errors become exit codes."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

try:  # typer >= 0.20 vendors click as typer._click; older typer uses click itself
    from typer._click import core as _click_core
    from typer._click import exceptions as _click_exc
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import core as _click_core  # type: ignore[no-redef]
    from click import exceptions as _click_exc  # type: ignore[no-redef]

from featcli.errors import FeatcliError

_ARGS: list[str] = []


def command_line() -> str:
    """The command line of this invocation, shell-quoted (recorded in output metadata)."""
    import shlex

    return " ".join(shlex.quote(a) for a in ["featcli", *_ARGS])


def report_error(message: str) -> None:
    """Print one red ``featcli: error:`` line on stderr."""
    from featcli.cli.common import err_console

    err_console().print(f"[bold red]featcli: error:[/] {message}", markup=True, highlight=False, soft_wrap=True)


class FeatcliGroup(TyperGroup):
    """Typer group that turns :class:`FeatcliError` into one line on stderr and its exit code.

    Click's own usage errors keep exit code 2. Anything unexpected is reported on one line too
    (set ``FEATCLI_DEBUG=1`` to see the traceback), so users never get a stack dump.
    """

    def get_help_option(self, ctx: Any) -> Any:
        from featcli.cli.lean import leanify

        option = super().get_help_option(ctx)
        leanify(option)  # no pydantic import just to read an unset --help flag
        return option

    def main(self, args: Any = None, *a: Any, **kw: Any) -> Any:
        global _ARGS
        _ARGS = list(sys.argv[1:] if args is None else args)
        return super().main(args, *a, **kw)

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
        "Example: featcli run samples/shapes.png -k sobel_x -k sobel_y --pool max:k=2 -o grid.png"
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
