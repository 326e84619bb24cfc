"""Every ``$ command`` shown in README.md and docs/*.md works verbatim in an empty folder.

Each page's ``console`` blocks run in order in one fresh temporary folder (so a page may make a file and use
it later), with featcli installed as the reader has it and an 80-column terminal. A command whose shown
output has a ``featcli: error:`` line or a ``{"error": ...}`` record must fail; any other must succeed.
Where a page shows output, the output must match it line by line (trailing blanks ignored): a line ``...``
stands for any number of lines, and ``...`` inside a line for any text (timings). ``pytest --update-golden``
rewrites the shown outputs that have no ``...`` from real runs (review the diff).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Shown:
    page: str
    line: int
    command: str
    output: list[str] = field(default_factory=list)


def shown_commands(page: Path) -> list[Shown]:
    """The ``$ ...`` lines of the page's ``console`` blocks and the output shown under each."""
    out: list[Shown] = []
    inside = False
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            inside = line.strip() == "```console" and not inside
            continue
        if not inside:
            continue
        if line.startswith("$ "):
            out.append(Shown(page.name, n, line[2:]))
        elif out and out[-1].line < n and line.strip() != "":
            out[-1].output.append(line.rstrip())
    return out


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Line-by-line match with ``...`` (a line: any lines; inside a line: any text)."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == "...":
        return any(_matches(rest, actual[i:]) for i in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*?".join(re.escape(part) for part in head.split("..."))
    return bool(re.fullmatch(pattern, actual[0].rstrip())) and _matches(rest, actual[1:])


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FEATCLI_", "PYTEST"))}
    bindir = str(Path(sys.executable).parent)
    env.update(PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}", COLUMNS="80", LINES="50", TERM="dumb",
               NO_COLOR="1", HOME=str(home), MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the featcli under test
    return env


def _rewrite(page: Path, fixes: list[tuple[Shown, list[str]]]) -> None:
    """Replace the shown output of each command in ``fixes`` by the actual one (``--update-golden``)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for shown, actual in sorted(fixes, key=lambda f: -f[0].line):
        end = shown.line
        while end < len(lines) and not lines[end].startswith(("$ ", "```")):
            end += 1
        lines[shown.line:end] = actual
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")


# pages whose commands train networks, run whole models or draw many pictures: ~200 CPU-seconds together, run by CI
# with the slow tests (the default run has a 300 CPU-second budget)
SLOW_PAGES = {"cam.md", "diff.md", "explain.md", "kernels.md", "models.md", "top.md", "train.md"}


@pytest.mark.parametrize("page", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_PAGES else p
                                  for p in PAGES if shown_commands(p)], ids=lambda p: p.name)
def test_every_shown_command_works_verbatim(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    update = bool(request.config.getoption("--update-golden"))
    fixes: list[tuple[Shown, list[str]]] = []
    (tmp_path / "home").mkdir()
    env = _env(tmp_path / "home")
    work = tmp_path / "work"
    work.mkdir()
    for shown in shown_commands(page):
        res = subprocess.run(["bash", "-o", "pipefail", "-c", f"{shown.command} 2>&1"], cwd=work, env=env,
                             capture_output=True, text=True, timeout=300)
        where = f"{shown.page}:{shown.line}: $ {shown.command}"
        fails = any(line.startswith(("featcli: error:", '{"error"')) for line in shown.output)
        assert (res.returncode != 0) == fails, f"{where}\nexit {res.returncode}\n{res.stdout}{res.stderr}"
        if shown.output:
            actual = [ln.rstrip() for ln in res.stdout.splitlines() if ln.strip()]
            if update and not _matches(shown.output, actual) and not any("..." in ln for ln in shown.output):
                fixes.append((shown, actual))  # shown outputs with wildcards are edited by hand
                continue
            assert _matches(shown.output, actual), f"{where}\nshown:\n" + "\n".join(shown.output) + \
                "\nactual:\n" + "\n".join(actual)
    if fixes:
        _rewrite(page, fixes)


def test_pages_show_commands() -> None:
    # the docs keep commands to try; this test would silently pass if the parser found none
    assert len(shown_commands(ROOT / "README.md")) >= 5


def test_the_matcher() -> None:
    assert _matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert _matches(["took ... s"], ["took 0.05 s"])
    assert not _matches(["a", "z"], ["a", "b", "z"])


def test_design_module_map_lists_every_module() -> None:
    text = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `(featcli/[\w/]+\.py)` \|", text, re.M))
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "featcli").rglob("*.py")}
    assert modules - listed == set(), "add to docs/DESIGN.md's module map"
    assert listed - modules == set(), "remove from docs/DESIGN.md's module map"
