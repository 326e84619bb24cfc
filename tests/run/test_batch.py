"""Batches: discovery, JSONL records in order, bad files, collisions, resume, stdin lists, batching, Ctrl-C."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.io.inputs import discover, unique_stems
from featcli.run.batch import Record, run_batch
from featcli.run.config import RunConfig
from featcli.stages.build import build_stack

STAGES = ["conv:w=sobel_x+sobel_y,p=1", "magnitude", "maxpool:k=2"]


def _img(path: Path, seed: int, size: tuple[int, int] = (40, 32)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    _img(d / "a.png", 1)
    _img(d / "b.jpg", 2)
    _img(d / "c.png", 3, size=(24, 20))
    (d / "d_not_image.png").write_text("hello")
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(buf, format="JPEG")
    (d / "e_truncated.jpg").write_bytes(buf.getvalue()[:200])
    (d / "f_empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not picked up: not an image extension")
    return d


def _records(stdout: str) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_folder_with_bad_files(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    res = runner.invoke(app, ["run", str(folder), *STAGES, "--out-dir", str(out), "--jsonl"])
    assert res.exit_code == 1, res.output
    recs = _records(res.stdout)
    assert [Path(r["path"]).name for r in recs] == ["a.png", "b.jpg", "c.png", "d_not_image.png",
                                                    "e_truncated.jpg", "f_empty.png"]
    assert [r["status"] for r in recs] == ["ok", "ok", "ok", "failed", "failed", "failed"]
    assert [r["index"] for r in recs] == list(range(6))
    assert "not an image" in recs[3]["error"]
    assert "truncated" in recs[4]["error"] or "decode" in recs[4]["error"]
    assert "empty" in recs[5]["error"]
    assert recs[0]["output"] == [1, 1, 16, 20] and recs[2]["output"] == [1, 1, 10, 12]
    assert all(Path(f).exists() for r in recs[:3] for f in r["outputs"])
    assert len(list(out.glob("*.png"))) == 9
    assert "3 ok, 3 failed, 0 skipped" in res.stderr
    assert res.stderr.count("featcli: error:") == 3
    assert not list(out.glob("*.part"))


def test_collisions_resolved_never_overwritten(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    _img(tmp_path / "a.png", 1)
    _img(tmp_path / "a.jpg", 2)
    _img(tmp_path / "x" / "a.png", 3)
    out = tmp_path / "out"
    out.mkdir()
    res = runner.invoke(app, ["run", str(tmp_path / "a.png"), str(tmp_path / "a.jpg"), str(tmp_path / "x" / "a.png"),
                              "relu", "--out-dir", str(out), "--jsonl"])
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 and len(set(names)) == 3
    assert unique_stems(["d/a.png", "d/a.jpg", "e/a.png"]) == ["d_a_png", "a_jpg", "e_a_png"]
    # A second run without --force refuses (and says so per file), never overwrites.
    before = {p: p.read_bytes() for p in out.iterdir()}
    res = runner.invoke(app, ["run", str(tmp_path / "a.png"), str(tmp_path / "a.jpg"), str(tmp_path / "x" / "a.png"),
                              "relu", "--out-dir", str(out)])
    assert res.exit_code == 1 and res.stderr.count("--force") == 3
    assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_grid_template_per_input(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(folder / "a.png"), str(folder / "c.png"), *STAGES, "-o",
                              str(tmp_path / "{stem}_grid.png")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.glob("*_grid.png")) == ["a_grid.png", "c_grid.png"]
    res = runner.invoke(app, ["run", str(folder / "a.png"), str(folder / "c.png"), "relu", "-o",
                              str(tmp_path / "g.png")])
    assert res.exit_code == 2 and "template" in res.output


def test_skip_existing_resumes(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    args = ["run", str(folder / "a.png"), str(folder / "b.jpg"), "relu", "--out-dir", str(out), "--jsonl"]
    runner.invoke(app, [*args[:2], *args[3:]])  # only a.png
    res = runner.invoke(app, [*args, "--skip-existing"])
    assert res.exit_code == 0, res.output
    assert [r["status"] for r in _records(res.stdout)] == ["skipped", "ok"]
    assert "1 ok, 0 failed, 1 skipped" in res.stderr


def test_paths_from_stdin_and_globs(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    listing = f"{folder / 'a.png'}\n# a comment\n\n{folder / 'c.png'}\n"
    res = runner.invoke(app, ["run", "--from-file", "-", "relu", "--jsonl"], input=listing)
    assert res.exit_code == 0, res.output
    assert [Path(r["path"]).name for r in _records(res.stdout)] == ["a.png", "c.png"]
    assert [Path(p).name for p in discover([str(folder / "*.png")])] == ["a.png", "c.png", "d_not_image.png",
                                                                         "f_empty.png"]


def test_recursive_discovery(tmp_path: Path) -> None:
    (tmp_path / "s" / "t").mkdir(parents=True)
    _img(tmp_path / "top.png", 1)
    _img(tmp_path / "s" / "mid.png", 2)
    _img(tmp_path / "s" / "t" / "deep.jpg", 3)
    assert [Path(p).name for p in discover([str(tmp_path)])] == ["top.png"]
    assert sorted(Path(p).name for p in discover([str(tmp_path)], recursive=True)) == ["deep.jpg", "mid.png",
                                                                                     "top.png"]
    assert sorted(Path(p).name for p in discover([str(tmp_path / "**" / "*.png")], recursive=True)) == [
        "mid.png", "top.png"]
    assert discover(["missing.png"]) == ["missing.png"]  # kept, so it is reported as failed


def test_batching_does_not_change_results(folder: Path, tmp_path: Path) -> None:
    paths = [str(folder / "a.png"), str(_img(tmp_path / "a2.png", 7)), str(folder / "b.jpg"), str(folder / "c.png")]
    stack = tuple(build_stack([*STAGES, "bn", "relu"]))  # bn: torch only
    maps: dict[int, list[np.ndarray]] = {}
    for bs in (1, 3):
        got: list[Record] = []
        run_batch(paths, RunConfig(stack=stack), emit=got.append, batch_size=bs, workers=2)
        assert {r.data["engine"] for r in got} == {"torch"}
        assert [r.status for r in got] == ["ok"] * 4
        maps[bs] = [r.outcome.results[-1].tensor.numpy() for r in got]
    for a, b in zip(maps[1], maps[3], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_interrupt_stops_cleanly(folder: Path, tmp_path: Path) -> None:
    paths = [str(_img(tmp_path / f"i{i}.png", i)) for i in range(12)]
    out = tmp_path / "out"
    out.mkdir()
    cfg = RunConfig(stack=tuple(build_stack(STAGES)), out_dir=str(out))
    seen: list[Record] = []

    def emit(rec: Record) -> None:
        seen.append(rec)
        if len(seen) == 2:
            raise KeyboardInterrupt

    summary = run_batch(paths, cfg, emit=emit, batch_size=2, workers=2)
    assert summary.interrupted
    assert summary.ok >= 2 and summary.total < 12
    assert not [p for p in out.iterdir() if not p.name.endswith(".png")]  # no temp/partial files
    for p in out.iterdir():
        Image.open(p).verify()  # every file left is a complete PNG


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_engines_give_the_same_batch(folder: Path, tmp_path: Path, engine: str) -> None:
    paths = [str(folder / "a.png"), str(folder / "b.jpg"), str(folder / "c.png")]
    got: list[Record] = []
    run_batch(paths, RunConfig(stack=tuple(build_stack(STAGES)), engine=engine), emit=got.append, batch_size=2)
    assert [r.data["engine"] for r in got] == [engine] * 3
    assert [r.data["output"] for r in got] == [[1, 1, 16, 20], [1, 1, 16, 20], [1, 1, 10, 12]]
    ref: list[Record] = []
    run_batch(paths, RunConfig(stack=tuple(build_stack(STAGES)), engine="torch"), emit=ref.append, batch_size=1)
    for a, b in zip(got, ref, strict=True):
        np.testing.assert_allclose(np.asarray(a.outcome.results[-1].tensor), b.outcome.results[-1].tensor.numpy(),
                                   atol=1e-5)


def test_an_interrupt_while_the_queue_is_refilled_keeps_the_record_of_a_published_image(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The NumPy engine's loader runs a whole image and publishes its files; a Ctrl-C that lands while the next
    # image is being queued (refill) must not lose the record of the image just taken off the queue.
    from concurrent.futures import ThreadPoolExecutor

    paths = [str(_img(tmp_path / f"i{i}.png", i)) for i in range(8)]
    out = tmp_path / "out"
    out.mkdir()
    cfg = RunConfig(stack=tuple(build_stack(STAGES)), engine="numpy", out_dir=str(out))
    real = ThreadPoolExecutor.submit
    count = {"loads": 0}

    def submit(self: ThreadPoolExecutor, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._thread_name_prefix.startswith("featcli-load"):  # type: ignore[attr-defined]
            count["loads"] += 1
            if count["loads"] == 4:  # the window's first refill after an image was taken
                raise KeyboardInterrupt
        return real(self, fn, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
    seen: list[Record] = []
    summary = run_batch(paths, cfg, emit=seen.append, batch_size=1, workers=1)
    assert summary.interrupted
    recorded = sorted(Path(o).name for r in seen for o in r.data.get("outputs", []))
    assert recorded and recorded == sorted(p.name for p in out.iterdir()), (recorded, sorted(os.listdir(out)))
