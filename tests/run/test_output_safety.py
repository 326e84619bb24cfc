"""Issue #17, output safety: names taken by another run, inputs named as outputs, two outputs that are one
file, an image's files all or none, and --name kept inside --out-dir."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.errors import OutputError
from featcli.io import outputs
from featcli.io.outputs import RACED, InputSet
from featcli.run.config import RunConfig
from featcli.run.destinations import fill
from featcli.run.image import Runner
from featcli.stages.build import build_stack

STAGES = ["conv:w=sobel_x+sobel_y,p=1", "magnitude"]


def _img(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    for i in range(4):
        _img(d / f"{i}.png", i)
    return d


def _records(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("computed before the run's outputs were checked")

    monkeypatch.setattr(Runner, "execute", refuse)


def test_a_name_another_run_takes_while_this_one_writes_fails_that_image(
        runner: CliRunner, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    real = outputs.publish

    def other_run_first(tmp: str, final: Path, *, force: bool = False) -> None:
        if final.name == "2.png":
            final.write_bytes(b"the other run's file")  # created after this run checked the name
        real(tmp, final, force=force)

    monkeypatch.setattr(outputs, "publish", other_run_first)
    res = runner.invoke(app, ["run", str(inputs), *STAGES, "-o", str(out / "{stem}.png"), "--jsonl"])
    assert res.exit_code == 1, res.output
    recs = _records(res.stdout)
    assert [r["status"] for r in recs] == ["ok", "ok", "failed", "ok"]
    assert recs[2]["error"] == f"{out / '2.png'}: {RACED}"
    assert (out / "2.png").read_bytes() == b"the other run's file"
    assert all(Path(f).exists() for r in recs if r["status"] == "ok" for f in r["outputs"])
    assert not list(out.glob(".*"))


def test_force_never_overwrites_an_input_of_the_run(runner: CliRunner, inputs: Path, no_compute: None) -> None:
    before = _files(inputs)
    # Input n writes {n}.png: 2.png (n=1) would write 1.png and 3.png (n=2) would write 2.png, inputs of
    # this run: refused before any work, --force or not.
    res = runner.invoke(app, ["run", str(inputs / "1.png"), str(inputs / "2.png"), str(inputs / "3.png"), "relu",
                              "-o", str(inputs / "{n}.png"), "--force"])
    assert res.exit_code == 1, res.output
    assert "refusing to overwrite an input file of this run" in res.stderr
    assert f"it is input {inputs / '1.png'}" in res.stderr
    assert _files(inputs) == before


def test_the_per_image_check_knows_every_input_of_the_run(inputs: Path) -> None:
    a, b = str(inputs / "0.png"), str(inputs / "1.png")
    cfg = RunConfig(stack=tuple(build_stack(["relu"])), output=b, force=True)
    with pytest.raises(OutputError, match="input"):
        Runner(cfg, inputs=InputSet([a, b])).process(a)
    assert (inputs / "1.png").read_bytes() == _img(inputs / "x.png", 1).read_bytes()


@pytest.mark.parametrize(("layout", "args", "names"), [
    ("batch", ["-o", "{out}/{ext}.png"], ["-o of", "put {stem} in the -o template"]),
    ("batch", ["--out-dir", "{out}", "--name", "fixed.png", "--stages", "2"], ["stage 2 (--out-dir) of"]),
    ("same-names", ["--out-dir", "{out}", "--name", "{name}_{index}"], ["stage 1 (--out-dir) of"]),
    ("same-names", ["-o", "{out}/{parent}.png", "--save", "{out}/{name}.npz"], ["--save of"]),
    ("one", ["--out-dir", "{out}", "--name", "x.png", "-o", "{out}/x.png"], ["give them different names"]),
    ("one", ["--out-dir", "{out}", "--name", "s.png"], ["put {index} or {stage} in the --name template"]),
])
def test_two_outputs_that_are_one_file_are_a_usage_error_before_any_work(
        runner: CliRunner, tmp_path: Path, no_compute: None, layout: str, args: list[str], names: list[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if layout == "same-names":  # x/a.png and y/a.png: {stem} is made distinct, {name} is not
        (tmp_path / "x").mkdir()
        (tmp_path / "y").mkdir()
        srcs = [str(_img(tmp_path / "x" / "a.png", 1)), str(_img(tmp_path / "y" / "a.png", 2))]
    else:
        srcs = [str(_img(tmp_path / f"{i}.png", i)) for i in range(3 if layout == "batch" else 1)]
    args = [a.replace("{out}", str(out)) for a in args]
    res = runner.invoke(app, ["run", *srcs, *STAGES, *args])
    assert res.exit_code == 2, res.output
    assert "two outputs of this run are the same file" in res.stderr
    for text in names:
        assert text in res.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("how", ["encode", "publish", "npy"])
def test_a_failed_save_leaves_none_of_the_image_s_files(runner: CliRunner, tmp_path: Path, how: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    src = str(_img(tmp_path / "a.png", 1))
    out = tmp_path / "out"
    out.mkdir()
    save = out / ("m.npy" if how == "npy" else "m.npz")
    if how == "encode":
        def full(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(np, "savez", full)
    elif how == "publish":  # the last file's name is taken between its check and its publication
        real = outputs.publish

        def taken(tmp: str, final: Path, *, force: bool = False) -> None:
            if final.suffix == ".npz":
                final.write_bytes(b"theirs")
            real(tmp, final, force=force)

        monkeypatch.setattr(outputs, "publish", taken)
    res = runner.invoke(app, ["run", src, *STAGES, "-o", str(out / "g.png"), "--out-dir", str(out),
                              "--save", str(save)])
    assert res.exit_code == 1, res.output
    left = sorted(p.name for p in out.iterdir())
    assert left == (["m.npz"] if how == "publish" else [])
    if how == "publish":
        assert save.read_bytes() == b"theirs"


@pytest.mark.parametrize("name", ["../{stem}.png", "/tmp/{stem}.png", "a/../../{stem}.png", "{stem}/../../x"])
def test_name_cannot_leave_out_dir(runner: CliRunner, tmp_path: Path, no_compute: None, name: str) -> None:
    src = str(_img(tmp_path / "a.png", 1))
    (tmp_path / "out").mkdir()
    res = runner.invoke(app, ["run", src, "relu", "--out-dir", str(tmp_path / "out"), "--name", name])
    assert res.exit_code == 2, res.output
    assert "outside --out-dir" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "out"]


def test_name_may_use_sub_folders_inside_out_dir(runner: CliRunner, tmp_path: Path) -> None:
    src = str(_img(tmp_path / "a.png", 1))
    (tmp_path / "out" / "sub").mkdir(parents=True)
    res = runner.invoke(app, ["run", src, "relu", "--out-dir", str(tmp_path / "out"), "--name",
                              "x/../sub/{stem}.png"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "sub" / "a.png").exists()


def test_input_names_cannot_inject_path_separators() -> None:
    assert fill("{parent}/{stem}.png", "a/../x.png") == "__/x.png"
    assert fill("{stem}.png", "a\\b.png") == "a_b.png"
    assert fill("{name}.png", "..png") == "..png.png"
    assert fill("out/{parent}_{stem}.png", "pics/cat.jpg") == "out/pics_cat.png"  # fields still work


@pytest.mark.parametrize("name", ["link/{stem}.png", "sub/link/{stem}_{index}.png", "sub/../link/x/{stem}.png"])
def test_a_symlinked_sub_folder_cannot_lead_out_of_out_dir(runner: CliRunner, tmp_path: Path, no_compute: None,
                                                           name: str) -> None:
    """The name check is on real paths: a folder inside --out-dir that is a symbolic link to a folder outside
    it is refused in one line before any work, and nothing is written outside (nor inside)."""
    src = str(_img(tmp_path / "a.png", 1))
    outside = tmp_path / "outside"
    (outside / "x").mkdir(parents=True)
    (tmp_path / "out" / "sub").mkdir(parents=True)
    (tmp_path / "out" / "link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "out" / "sub" / "link").symlink_to(outside, target_is_directory=True)
    res = runner.invoke(app, ["run", src, "relu", "--out-dir", str(tmp_path / "out"), "--name", name])
    assert res.exit_code == 1, res.output
    assert res.stderr.count("\n") == 1 and "through the symbolic link" in res.stderr, res.stderr
    assert [p.name for p in outside.rglob("*")] == ["x"]
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_a_link_inside_out_dir_that_stays_inside_is_fine(runner: CliRunner, tmp_path: Path) -> None:
    src = str(_img(tmp_path / "a.png", 1))
    (tmp_path / "out" / "real").mkdir(parents=True)
    (tmp_path / "out" / "alias").symlink_to(tmp_path / "out" / "real", target_is_directory=True)
    res = runner.invoke(app, ["run", src, "relu", "--out-dir", str(tmp_path / "out"), "--name", "alias/{stem}.png"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "real" / "a.png").is_file()


def test_a_link_made_while_the_run_computes_is_refused_at_write_time(tmp_path: Path) -> None:
    from featcli.run.destinations import check_inside

    out = tmp_path / "out"
    out.mkdir()
    check_inside(str(out), str(out / "sub" / "a.png"))  # a folder still to be made: fine
    (out / "sub").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(OutputError, match="through the symbolic link"):
        check_inside(str(out), str(out / "sub" / "a.png"))
