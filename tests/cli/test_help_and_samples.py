"""`--help` of every command reads well; the bundled samples work from any folder as sample:NAME."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featcli.cli import COMMANDS, app
from featcli.resources import sample_names

_COMMANDS = [[c] for c in COMMANDS] + [["kernels", "show"], ["kernels", "list"], ["kernels", "inspect"]]


@pytest.mark.parametrize("cmd", _COMMANDS, ids=" ".join)
def test_help_shows_values_not_python_types(runner: CliRunner, cmd: list[str]) -> None:
    res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert not re.search(r"<(bool|str|int|float|list\[[^>]*\]|int range)>", text), text
    assert "{" not in text.splitlines()[1], text  # the usage line: no {ARG} wrappers
    assert not re.search(r"\bissue\s*#?\d", text, re.I)
    assert "featcli " in " ".join(text.split()).split("Usage:", 1)[1].split("╭", 1)[0] or "Example" in text


def _commands(group, path=()):  # type: ignore[no-untyped-def]
    for name, cmd in group.commands.items():
        yield (*path, name), cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))


def test_help_paragraphs_are_flowed_not_broken_mid_sentence() -> None:
    import typer

    for path, cmd in _commands(typer.main.get_command(app)):
        for para in (cmd.help or "").split("\n\n"):
            lines = para.split("\n")
            # a paragraph is one line, or lines that are examples (indented) or a \b block
            assert len(lines) == 1 or para.startswith("\b") or all(ln.startswith(" ") for ln in lines[1:]), \
                (path, para)


def test_samples_lists_every_sample(runner: CliRunner) -> None:
    res = runner.invoke(app, ["samples", "--json"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["name"] for r in rows] == sample_names()
    assert all(r["about"] and Path(r["path"]).is_file() and r["spec"] == f"sample:{r['name']}" for r in rows)
    res = runner.invoke(app, ["samples", "photo", "--path"])
    assert res.exit_code == 0 and Path(res.stdout.strip()).name == "photo.jpg"


def test_sample_names_work_where_images_go(runner: CliRunner, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # an empty folder: no samples/ here
    res = runner.invoke(app, ["info", "sample:shapes", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["width"] == 320
    res = runner.invoke(app, ["run", "sample:shapes", "-k", "sobel_x", "-o", "edges.png", "--json"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "edges.png").is_file()
    res = runner.invoke(app, ["run", "sample:shape", "-k", "sobel_x", "-o", "e2.png"])
    assert res.exit_code == 1
    assert "no sample named 'shape' (did you mean sample:shapes?)" in res.stderr


def test_a_file_named_like_a_sample_wins(runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (7, 5)).save(tmp_path / "sample:shapes", format="PNG")  # a real file with that name
    res = runner.invoke(app, ["info", "sample:shapes", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["width"] == 7


def test_run_help_says_which_tensors_save_keeps_for_a_network() -> None:
    """``--save`` keeps every stage of a stack, but only the layers ``--layers`` picks of a ``--model``."""
    import typer

    run = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    save = next(p for p in run.params if p.name == "save")
    assert "with --model, the layers --layers picks" in (save.help or "")


def test_docs_train_filters_picture_is_current(runner, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """docs/img/train_filters.png is what docs/train.md's command draws now: its left half (the seeded random
    init, the same on every machine) pixel for pixel; the right half depends on the thread count."""
    import numpy as np
    from PIL import Image

    doc = Path(__file__).resolve().parents[2] / "docs" / "img" / "train_filters.png"
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "orientation", "conv:out=4,k=3", "abs", "gap", "flatten", "linear:out=4",
                              "--epochs", "8", "--lr", "0.02", "-o", "edges.safetensors"])
    assert res.exit_code == 0, res.output
    with Image.open("edges.filters.png") as new, Image.open(doc) as old:
        assert new.size == old.size
        half = (new.width - 16) // 2  # two banks side by side, 16 px apart
        a, b = np.asarray(new.convert("RGB"))[:, :half], np.asarray(old.convert("RGB"))[:, :half]
    assert np.array_equal(a, b), "docs/img/train_filters.png is stale: rerun the command of docs/train.md"
