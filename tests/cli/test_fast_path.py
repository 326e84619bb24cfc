"""featcli/cli/fast.py answers `featcli shape` exactly as the Typer app does, or declines.

Every command line of the table runs both ways, with the plain-table conditions (piped, no COLUMNS) and
with COLUMNS set (where the fast path hands the table to Rich): stdout, stderr and the exit code must agree.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featcli.cli import app, console
from featcli.cli.fast import parse_shape_args, try_shape

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "samples" / "shapes.png")
T = ["1x3x640x640", "conv:out=5,k=3x5,s=1x2,p=2", "maxpool:k=2"]

CASES = [
    T, [*T, "--json"], [*T, "--format", "json"], [*T, "--format=csv"], [*T, "--format", "markdown"],
    [*T, "--dtype", "float16"], [*T, "--dtype=bfloat16", "--json"], ["--json", *T], [T[0], "--json", *T[1:]],
    ["1x3x224x224", "@resnet18"], ["1x3x224x224", "@lenet5", "--json"], ["1x1x28x28", "@lenet5"],
    ["1x3x32x32", "conv:k=3,p=?", "--solve", "30x30"], ["1x3x32x32", "conv:k=3,p=?"],
    ["1x3x32x32", "conv:k=3,p=?", "--json"], ["1x3x7x9", "avgpool:k=3,s=2,ceil=1", "maxpool:k=2,ceil=1"],
    ["1x4x5x5", "convt:k=4,s=2,p=1", "conv:k=3,p=same", "adaptiveavg:o=3", "flatten", "linear:out=10"],
    ["1x3x32x32", "save:a", "conv:k=3,p=1", "add:a(conv:k=1", "bn)", "relu"],
    ["1x3x32x32", "save:a", "conv:k=3,p=1", "cat:a"],
    ["1x3x32x32"], ["8x8", "maxpool:k=2"], ["3x8x8", "gap", "flatten"],
    ["1x3x32x32", "conv:w=sobel_x+sobel_y,p=1", "magnitude"], [SAMPLE, "conv:k=3"],
    # errors and usage errors: the fast path declines, the app answers
    ["1x3x4x4", "conv:k=9"], ["1x3x4x4", "conv:k=3", "conv:k=3"], ["1x3x4x4", "conv:k=3", "conv:k=3", "--json"],
    ["1x3xAx4", "conv:k=3"], ["1x3x4x4", "conv:q=3"], ["1x3x4x4", "nosuchop"], [*T, "--format", "yaml"],
    [*T, "--dtype", "int8"], [*T, "--solve", "3x3"], [*T, "--jsn"], [*T, "--json", "--json"], [*T, "--format"],
    [*T, "--json=1"], [], ["-"], ["-", "conv:k=3"], ["-", "--format", "csv"], ["-", "--dtype=float16"],
    ["224x224x3", "conv:k=3"], ["1x3x32", "conv"], ["1x3x8x8", "conv", "k=3"], ["1x3x8x8", "conv:k=3,strde=2"],
    [*T, "--", "x"], [*T, "-x"], ["1x3x4x4", "@nosuch"],
    # help and options the fast path leaves to Typer
    ["--help"], [*T, "-h"], [*T, "--code"], [*T, "--sizes", "8-40"], [SAMPLE, "--channels", "gray", "conv:k=3"],
    ["é", "conv:k=3"], ["1x3x8x8", "conv:k=3,w=é"],
]


def _fast(argv: list[str], stdin: str = "") -> tuple[str, str, int] | None:
    out, err = io.StringIO(), io.StringIO()
    code = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        saved = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            if not try_shape(argv):
                assert out.getvalue() == "" and err.getvalue() == ""  # declined untouched
                return None
        except SystemExit as exc:
            code = exc.code
        finally:
            sys.stdin = saved
    return out.getvalue(), err.getvalue(), int(code or 0)


def _typer(argv: list[str], stdin: str = "") -> tuple[str, str, int]:
    res = CliRunner().invoke(app, ["shape", *argv], input=stdin)
    return res.stdout, res.stderr, res.exit_code


@pytest.mark.parametrize("columns", [None, "160", "80"])
@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c)[:60] for c in CASES])
def test_fast_path_matches_typer(argv: list[str], columns: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)
    if columns:
        monkeypatch.setenv("COLUMNS", columns)
    console._consoles.cache_clear()
    fast = _fast(argv)
    console._consoles.cache_clear()
    assert fast is None or fast == _typer(argv)


def test_fast_path_answers_the_common_lines() -> None:
    assert parse_shape_args(T) is not None and parse_shape_args([*T, "--json"]) is not None
    assert parse_shape_args([*T, "--code"]) is None and parse_shape_args([*T, "--help"]) is None
    assert _fast(T) is not None and _fast([*T, "--format", "csv"]) is not None


def test_stdin_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = "1x3x32x32 conv:k=3\n# c\n\n2x2 conv:k=3\n1x3x8x8 @lenet5\nbad\n1x3x8x8 'add:a(conv:k=1)'\n"
    fast = _fast(["-"], lines)
    assert fast is not None and fast == _typer(["-"], lines)
    assert fast[2] == 1 and len(fast[0].splitlines()) == 5


def test_main_skips_typer_and_rich() -> None:
    code = ("import sys; sys.argv = ['featcli', 'shape', '1x3x64x64', 'conv:k=3', '--json']\n"
            "from featcli.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code\n"
            "print(json.dumps(sorted(m for m in ('typer', 'rich', 'click', 'numpy', 'torch') if m in sys.modules)),"
            " file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, cwd=ROOT,
                       check=True)
    assert json.loads(p.stdout)["output"] == [1, 3, 62, 62]
    assert json.loads(p.stderr.strip().splitlines()[-1]) == []
