"""--ray's worker and driver without Ray: a retried part racing a live first attempt publishes each output
once (same run: done; another run: refused), and an interrupted driver leaves exactly the files of the
records it emitted (parts fed by a fake stream)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from featcli.io.outputs import PendingOutputs, resolve_taken
from featcli.run.batch import Record, Summary
from featcli.run.config import RunConfig
from featcli.run.distributed import _InOrder, _PartRunner, _remove_unrecorded, _same_run, _stamp
from featcli.stages.build import build_stack

STACK = ["conv:w=sobel_x+sobel_y,p=1", "magnitude"]
RUN = "a" * 32


def _inputs(tmp_path: Path, n: int) -> list[str]:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(7)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (20, 24 + i, 3), dtype=np.uint8)).save(src / f"im{i}.png")
    return sorted(str(p) for p in src.iterdir())


def _cfg(out: Path, run_id: str = RUN) -> RunConfig:
    return RunConfig(stack=tuple(build_stack(STACK, kernels=[], pools=[])), engine="torch", out_dir=str(out),
                     stages="all", run_id=run_id, threads=1)


def _attempt(cfg: RunConfig, paths: list[str], part: range, *, reclaim: bool = True) -> list[Any]:
    """One attempt of a part, as a Ray actor runs it; ``reclaim=False``: the other attempt published after
    this one's start-up clean-up (a first attempt that is slow, not dead)."""
    worker = _PartRunner(cfg, paths, {"batch_size": 2, "workers": 1, "skip_existing": False})
    if not reclaim:
        worker._reclaim = lambda part: None  # type: ignore[method-assign]
    out = worker({"number": np.array([0]), "start": np.array([part.start]), "stop": np.array([part.stop])})
    return list(pickle.loads(out["records"][0]))


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_ino, p.read_bytes()) for p in sorted(folder.iterdir())}


def _plain(records: list[Any]) -> list[tuple[int, str, list[str]]]:
    return [(i, status, data.get("outputs", [])) for i, _, status, data, _ in records]


def test_a_second_attempt_of_the_same_run_finds_its_outputs_done(tmp_path: Path) -> None:
    paths, out = _inputs(tmp_path, 3), tmp_path / "out"
    first = _attempt(_cfg(out), paths, range(0, 3))
    before = _files(out)
    assert [r[2] for r in first] == ["ok"] * 3 and len(before) == 3 * 2  # stages=all: a PNG per stage
    second = _attempt(_cfg(out), paths, range(0, 3), reclaim=False)
    assert _plain(second) == _plain(first)  # one ok record each, naming the same files, no error
    after = _files(out)
    # Not rewritten where its bytes are the same (the same inode); a file whose bytes differ by float rounding
    # (a vectorised sum depends on the tensor's memory alignment: seen in CI, 1 run in ~50) is replaced by this
    # attempt's, as the next test shows. Either way: the same names, this run's files, no temp file.
    assert sorted(after) == sorted(before)
    assert all(after[k] == before[k] or after[k][0] != before[k][0] for k in after)
    assert all(_stamp(str(out / k)) == RUN for k in after)
    assert not [n for n in os.listdir(out) if n.startswith(".")]  # no temp file left


def test_a_same_run_file_with_other_bytes_is_replaced_and_another_runs_file_is_refused(tmp_path: Path) -> None:
    paths, out = _inputs(tmp_path, 2), tmp_path / "out"
    _attempt(_cfg(out), paths, range(0, 2))
    victim = out / sorted(os.listdir(out))[0]
    with Image.open(victim) as im:  # this run's file, a pixel off (another machine's float rounding)
        pixels, text = np.asarray(im).copy(), dict(im.text)
    pixels[0, 0] ^= 1
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    Image.fromarray(pixels).save(victim, pnginfo=info)
    before = _files(out)
    again = _attempt(_cfg(out), paths, range(0, 2), reclaim=False)
    assert [r[2] for r in again] == ["ok", "ok"]
    after = _files(out)
    assert after[victim.name][1] != before[victim.name][1]  # this attempt's bytes won
    assert {k: v for k, v in after.items() if k != victim.name} == {
        k: v for k, v in before.items() if k != victim.name}
    assert _stamp(str(victim)) == RUN

    other = _attempt(_cfg(out, "b" * 32), paths, range(0, 2), reclaim=False)  # another run: nothing reclaimed
    assert [r[2] for r in other] == ["failed", "failed"]
    assert "already exists" in (other[0][4] or "")
    assert _files(out) == after  # never overwritten


def test_resolver_refuses_files_without_the_run_id(tmp_path: Path) -> None:
    final, tmp = tmp_path / "x.png", tmp_path / ".x.png.1.part"
    final.write_bytes(b"same bytes, no run id")
    tmp.write_bytes(b"same bytes, no run id")
    with resolve_taken(_same_run(RUN)), pytest.raises(Exception, match="already exists"):
        with PendingOutputs() as out:
            out.write(final, lambda fh: fh.write(b"same bytes, no run id"))
            out.publish()
    assert not _same_run(RUN)(str(tmp), final) and final.read_bytes() == b"same bytes, no run id"
    stamped = b"\x89PNG featcli:run\0" + RUN.encode()
    final.write_bytes(stamped)
    with PendingOutputs() as out, pytest.raises(Exception, match="already exists"):
        out.write(final, lambda fh: fh.write(stamped))  # outside resolve_taken: refused as ever
        out.publish()
    with resolve_taken(_same_run(RUN)), PendingOutputs() as out:
        out.write(final, lambda fh: fh.write(stamped))
        assert out.publish() == [final]
    assert final.read_bytes() == stamped and [p.name for p in tmp_path.iterdir() if p.name != tmp.name] == ["x.png"]


class _Stream:
    """A fake Ray Data stream: the rows given (parts as they finish), then a Ctrl-C."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __iter__(self) -> Any:
        yield from self.rows
        raise KeyboardInterrupt


def test_interrupted_driver_emits_every_part_that_came_back_and_removes_the_rest(tmp_path: Path) -> None:
    paths, out = _inputs(tmp_path, 8), tmp_path / "out"
    cfg = _cfg(out)
    chunks = [range(0, 2), range(2, 4), range(4, 6), range(6, 8)]
    results = [_attempt(cfg, paths, c) for c in chunks]  # every part published its files...
    (out / ".im7_s2_magnitude.png.x1y2.part").write_bytes(b"half")  # ...one was killed while writing
    foreign = out / sorted(os.listdir(out))[-2]  # an image of part 3 whose file is another run's
    foreign.unlink()
    Image.new("L", (4, 4)).save(foreign)
    emitted: list[Record] = []
    summary = Summary()
    order = _InOrder(chunks, emitted.append, summary)
    rows = [{"number": 2, "records": pickle.dumps(results[2])},  # ...but only parts 2 and 0 came back
            {"number": 0, "records": pickle.dumps(results[0])}]
    with pytest.raises(KeyboardInterrupt):
        order.take(_Stream(rows))
    assert [r.index for r in emitted] == [0, 1]  # part 2 waits for part 1
    order.flush(stopped=True)
    assert [r.index for r in emitted] == [0, 1, 4, 5] and summary.ok == 4
    assert order.unrecorded() == [chunks[1], chunks[3]]
    _remove_unrecorded(cfg, paths, order.unrecorded())
    recorded = sorted(Path(f).name for r in emitted for f in r.data["outputs"])
    assert sorted(os.listdir(out)) == sorted([*recorded, foreign.name])  # and no temp file
    assert _stamp(str(foreign)) is None  # another run's file is never removed


def test_take_raises_when_parts_are_missing() -> None:
    order = _InOrder([range(0, 1), range(1, 2)], lambda r: None, Summary())
    with pytest.raises(RuntimeError, match="1 of the batch's 2 parts"):
        order.take([{"number": 0, "records": pickle.dumps([(0, "a", "ok", {}, None)])}])
