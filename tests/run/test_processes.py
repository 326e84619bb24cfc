"""--processes N and --shard I/N give exactly the files and records of one process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import featcli
from featcli.cli import app
from featcli.errors import UsageError
from featcli.run.processes import parse_shard, shard_range

ROOT = Path(featcli.__file__).parents[1]


def _folder(tmp_path: Path, n: int = 14, size: int = 48) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size + i, 3), dtype=np.uint8)).save(src / f"im{i:02d}.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return src


def _records(text: str) -> list[dict[str, object]]:
    out = []
    for line in text.splitlines():
        rec = json.loads(line)
        rec.pop("seconds", None)
        for stage in rec.get("stages", []):  # type: ignore[union-attr]
            stage.pop("seconds", None)
        out.append(rec)
    return out


def _hashes(folder: Path) -> dict[str, str]:
    """Each file's content: a PNG's pixels and palette (its text metadata records the command line, which
    differs), an npz's arrays."""
    out = {}
    for p in sorted(folder.iterdir()):
        h = hashlib.sha256()
        if p.suffix == ".png":
            with Image.open(p) as im:
                h.update(np.asarray(im).tobytes() + bytes(im.getpalette() or []))
        else:
            with np.load(p) as z:
                for k in z.files:
                    h.update(k.encode() + z[k].tobytes())
        out[p.name] = h.hexdigest()
    return out


STACK = ["conv:out=4,k=3,p=1", "relu", "maxpool:k=2", "--seed", "1", "--engine", "torch"]


def test_shards_together_are_one_run(runner: CliRunner, tmp_path: Path) -> None:
    src = _folder(tmp_path)
    whole = runner.invoke(app, ["run", str(src), *STACK, "--json", "-o", str(tmp_path / "a/{stem}.png")])
    assert whole.exit_code == 1  # the broken file
    parts = ""
    for i in (1, 2, 3):
        res = runner.invoke(app, ["run", str(src), *STACK, "--json", "--shard", f"{i}/3",
                                  "-o", str(tmp_path / "b/{stem}.png")])
        parts += res.stdout
    a, b = _records(whole.stdout), _records(parts)
    for rec in b:  # the same files, in another folder
        rec["outputs"] = [o.replace("/b/", "/a/") for o in rec.get("outputs", [])]  # type: ignore[union-attr]
    for rec in a:
        rec["outputs"] = list(rec.get("outputs", []))  # type: ignore[arg-type]
    assert len(a) == 15 and a == b
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")


def test_shard_arithmetic() -> None:
    assert parse_shard("1/1") == (1, 1)
    sizes = [len(shard_range(10, i, 4)) for i in range(1, 5)]
    assert sum(sizes) == 10 and max(sizes) - min(sizes) <= 1
    assert [shard_range(10, i, 4).start for i in range(1, 5)] == [0, 2, 5, 7]
    for bad in ("0/3", "4/3", "1", "a/b", "1/0"):
        with pytest.raises(UsageError, match="expected I/N"):
            parse_shard(bad)


@pytest.mark.parametrize("engine", [pytest.param("torch", marks=pytest.mark.slow), "numpy"])
def test_processes_give_one_process_files_and_records(tmp_path: Path, engine: str) -> None:
    src = _folder(tmp_path)
    stack = ["conv:w=sobel_x+sobel_y,p=1", "magnitude", "--engine", engine] if engine == "numpy" else STACK
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        res = subprocess.run([sys.executable, "-m", "featcli", "run", str(src), *stack, "--jsonl", "--processes",
                              str(n), "--batch-size", "2", "-o", str(out / "{stem}.png"), "--save",
                              str(out / "{stem}.npz")], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 1, res.stderr  # the broken file, reported as one line
        assert "Traceback" not in res.stderr and res.stderr.count("broken.png") == 1, res.stderr
        outs[n] = ([{**r, "outputs": [Path(o).name for o in r.get("outputs", [])]}  # type: ignore[union-attr]
                    for r in _records(res.stdout)], _hashes(out))
    assert outs[1][0] == outs[2][0] and len(outs[1][0]) == 15
    assert outs[1][1] == outs[2][1] and len(outs[1][1]) == 28


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_stops_the_workers_cleanly(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(src / f"{i:02d}.png",
                                                                                 compress_level=0)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "featcli", "run", str(src), "conv:out=16,k=5,p=2", "relu", "--stages", "all",
           "--out-dir", str(out), "--jsonl", "--processes", "2", "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    rest, errb = proc.communicate(timeout=120)
    err = errb.decode()
    records = [json.loads(line) for line in [first, *rest.splitlines()] if line.strip()]
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "interrupted" in err
    present = sorted(p.name for p in out.iterdir())
    assert not [n for n in present if n.startswith(".") or n.endswith(".part")], present
    assert present == sorted(Path(f).name for r in records for f in r["outputs"]), err
    assert [r["index"] for r in records] == sorted(r["index"] for r in records)


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_while_a_part_is_printed_keeps_its_records(tmp_path: Path) -> None:
    """The parent prints a part's records whole: a SIGTERM that lands after the first of them (as when a
    reader kills featcli on its first line) waits, so every published file keeps its record."""
    from featcli.cli.signals import sigterm_as_interrupt
    from featcli.run.batch import Record
    from featcli.run.config import RunConfig
    from featcli.run.processes import run_processes
    from featcli.stages.build import build_stack

    src = _folder(tmp_path, n=8)
    paths = sorted(str(p) for p in src.glob("*.png") if p.name != "broken.png")
    out = tmp_path / "out"
    out.mkdir()
    cfg = RunConfig(stack=tuple(build_stack(["conv:w=sobel_x+sobel_y,p=1", "magnitude"])), out_dir=str(out),
                    engine="numpy", threads=1)  # type: ignore[arg-type]
    seen: list[Record] = []

    def emit(rec: Record) -> None:
        seen.append(rec)
        if len(seen) == 1:
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # arrives inside the part's printing

    with sigterm_as_interrupt():
        summary = run_processes(paths, cfg, emit=emit, processes=2, batch_size=2)
    assert summary.interrupted
    assert len(seen) >= 2  # the whole first part (2 images), not just its first record
    named = sorted(Path(f).name for r in seen for f in (r.data or {}).get("outputs", []))
    assert named == sorted(p.name for p in out.iterdir())



def _run_with_kill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: str = "",
                   kill_at: int = 0) -> tuple[Any, list[Any], Path]:
    """``run_processes`` over 20 images (2 workers, parts of 2), with a worker SIGKILLed: by :data:`KILL_HOOK`
    (just after it published an image's files, before it sent that image's record), or (``kill_at``) by the
    parent when it emits its ``kill_at``-th record."""
    import multiprocessing

    from featcli.run.batch import Record
    from featcli.run.config import RunConfig
    from featcli.run.processes import run_processes
    from featcli.stages.build import build_stack

    src = _folder(tmp_path, n=20, size=16)
    paths = sorted(str(p) for p in src.glob("im*.png"))
    out = tmp_path / "out"
    cfg = RunConfig(stack=tuple(build_stack(["conv:w=sobel_x+sobel_y,p=1", "magnitude"])), engine="numpy",  # type: ignore[arg-type]
                    threads=1, output=str(out / "{stem}.png"), save=str(out / "{stem}.npz"))
    monkeypatch.setenv("FEATCLI_PROCESSES_KILL", hook)
    seen: list[Record] = []

    def emit(rec: Record) -> None:
        seen.append(rec)
        if len(seen) == kill_at:
            os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)  # type: ignore[arg-type]

    summary = run_processes(paths, cfg, emit=emit, processes=2, batch_size=2)
    return summary, seen, out


def _published_have_records(seen: list[Any], out: Path) -> None:
    present = sorted(p.name for p in out.iterdir())
    assert not [n for n in present if n.startswith(".")], present  # no temp file left
    assert present == sorted(Path(f).name for r in seen for f in r.data.get("outputs", []))
    assert [r.index for r in seen] == list(range(20))  # every input once, in input order


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_killed_worker_does_not_end_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #23: SIGKILL of one worker used to end the batch ("every worker process ended before the batch
    did") with files published and no record. Its images without a record run again in another worker."""
    summary, seen, out = _run_with_kill(tmp_path, monkeypatch, kill_at=3)
    assert (summary.ok, summary.failed, summary.interrupted) == (20, 0, False)
    _published_have_records(seen, out)
    assert len(list(out.iterdir())) == 40


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_an_image_that_kills_its_worker_twice_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker dies each time just after publishing image 7's files: they are removed (no file without a
    record), image 7 runs once more, alone, then is recorded failed; the batch goes on."""
    summary, seen, out = _run_with_kill(tmp_path, monkeypatch, hook="7")
    assert (summary.ok, summary.failed, summary.interrupted) == (19, 1, False)
    (bad,) = [r for r in seen if r.status == "failed"]
    assert bad.index == 7 and "im07.png: the worker process running it ended (killed by SIGKILL)" in (bad.error or "")
    _published_have_records(seen, out)
    assert not (out / "im07.png").exists() and not (out / "im07.npz").exists()
