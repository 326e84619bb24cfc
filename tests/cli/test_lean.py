"""The lean (pydantic-free) command class is every command's default, the kernels sub-app's included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command

from featcli.cli.base import lean_by_default
from featcli.cli.lean import LeanCommand, LeanGroup

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
sys.argv = ["featcli", *sys.argv[1:]]
from featcli.cli import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
print("pydantic" in sys.modules, code, file=sys.stderr)
"""


@pytest.mark.parametrize("argv", [
    ["kernels", "list"],
    ["shape", "1x3x8x8", "relu"],
    ["info", str(ROOT / "samples" / "shapes.png")],
    ["--help"],
    ["kernels", "--help"],
])
def test_commands_run_without_pydantic(argv: list[str]) -> None:
    res = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, cwd=ROOT)
    loaded, code = res.stderr.strip().splitlines()[-1].split()
    assert code == "0", res.stderr
    assert loaded == "False", f"featcli {' '.join(argv)} imported pydantic"


def test_every_registered_command_and_group_is_lean() -> None:
    from featcli.cli import app

    root = get_command(app)
    assert isinstance(root, LeanGroup)
    seen = []

    def walk(group: TyperGroup) -> None:
        for name, cmd in group.commands.items():
            seen.append(name)
            if isinstance(cmd, TyperGroup):
                assert isinstance(cmd, LeanGroup), name
                walk(cmd)
            else:
                assert isinstance(cmd, LeanCommand), name

    walk(root)
    assert {"shape", "info", "run", "kernels", "list", "show", "inspect"} <= set(seen)


def test_lean_by_default_keeps_explicit_classes_and_covers_sub_apps_registered_later() -> None:
    class Custom(TyperCommand):
        pass

    app = typer.Typer()
    sub = typer.Typer()
    app.add_typer(sub, name="sub")

    @app.command("plain")
    def plain() -> None: ...

    @app.command("custom", cls=Custom)
    def custom() -> None: ...

    @sub.command("late")  # registered on the sub-app after add_typer, as kernels_cmd.py does
    def late(n: int = 1) -> None: ...

    @sub.command("other")
    def other() -> None: ...

    lean_by_default(lean_by_default(app))  # idempotent
    group = get_command(app)
    assert isinstance(group, TyperGroup)
    assert type(group.commands["plain"]) is LeanCommand
    assert type(group.commands["custom"]) is Custom
    sub_group = group.commands["sub"]
    assert isinstance(sub_group, LeanGroup)
    assert {type(c) for c in sub_group.commands.values()} == {LeanCommand}
