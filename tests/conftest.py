"""Test-wide fixtures: a fixed, colourless terminal, a headless matplotlib, and golden files.

Golden files (``tests/golden/<area>/<name>.txt``) hold rendered output such as the ``shape`` and ``run``
tables. The ``golden`` fixture compares against them; ``pytest --update-golden`` rewrites them from the
current output instead (then review the diff with ``git diff tests/golden``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite tests/golden/<area>/<name>.txt from the current output instead of comparing")


@pytest.fixture(autouse=True)
def _fixed_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    monkeypatch.setenv("LINES", "50")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("FEATCLI_DEBUG", raising=False)
    from featcli.cli import console

    console._consoles.cache_clear()


@pytest.fixture
def runner():  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    return CliRunner()


def _normalise(text: str) -> str:
    # Rich pads table cells to the column width: trailing blanks carry no meaning and editors strip them.
    return "\n".join(line.rstrip() for line in text.rstrip("\n").splitlines()) + "\n"


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``golden(name, text)``: assert ``text`` equals ``tests/golden/<name>.txt`` (``name`` is ``area/stem``,
    e.g. ``"shape/tutorial"``), or write it there under ``--update-golden``.

    Trailing blanks of each line and trailing blank lines are ignored; a mismatch shows a unified diff.
    """
    update = bool(request.config.getoption("--update-golden"))

    def check(name: str, text: str) -> None:
        path = GOLDEN_DIR / f"{name}.txt"
        got = _normalise(text)
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(got, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"no golden file {path.relative_to(GOLDEN_DIR.parent)}; create it with --update-golden")
        want = _normalise(path.read_text(encoding="utf-8"))
        if got != want:
            diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                f"golden/{name}.txt", "output"))
            pytest.fail(f"output differs from golden/{name}.txt (rerun with --update-golden if intended):\n{diff}",
                        pytrace=False)

    return check
