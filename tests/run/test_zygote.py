"""--processes workers start from a fork server with their modules preloaded: what it imports, that it stops
with the batch, and that a signal to the whole process group (``timeout``, a service manager) stops the batch
as cleanly as one to the parent."""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featcli
from featcli.run import zygote

ROOT = Path(featcli.__file__).parents[1]
OPTIONAL = {"simplejpeg", "isal.isal_zlib"}  # imported when installed, as the workers do


@pytest.mark.parametrize("engine", [None, "numpy", "torch", "network"])
def test_every_preloaded_module_exists(engine: str | None) -> None:
    names = zygote.preload(engine)
    assert names[0] == "featcli.run.zygote"  # first: the server is deaf to signals while it imports torch
    for name in names:
        if name not in OPTIONAL:
            importlib.import_module(name)


def test_importing_it_elsewhere_changes_no_signal_handler() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    importlib.reload(zygote)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


#: What a child reports, then it waits for a word (run by ``exec``: a child unpickles it by name).
CHILD = ("import os, sys; conn.send((os.getppid(), os.getcwd(), os.environ.get('FEATCLI_ZYGOTE_TEST'), "
         "os.environ.get('PYTHONPATH'), os.environ.get('PYTHONSAFEPATH'), sys.modules['featcli'].__file__)); "
         "conn.recv()")


@pytest.mark.skipif("forkserver" not in multiprocessing.get_all_start_methods(), reason="no fork server here")
def test_the_server_is_this_process_and_ignores_signals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server starts with the batch: its working directory and environment, and the modules this process
    would import (not a featcli in the current directory, which ``python -c`` would look at first); a
    SIGTERM or SIGINT meant for the process group leaves it running (its children's exit codes reach the
    parent through it), its children react to them as Python's defaults do, and it ends with the batch."""
    (tmp_path / "featcli").mkdir()
    (tmp_path / "featcli" / "__init__.py").write_text("# not the featcli running the batch\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEATCLI_ZYGOTE_TEST", "seen")
    monkeypatch.delenv("PYTHONSAFEPATH", raising=False)
    with zygote.worker_context(["featcli.run.zygote"]) as ctx:
        assert ctx.get_start_method() == "forkserver"
        procs, conns = [], []
        try:
            for _ in range(2):
                parent, child = ctx.Pipe()
                procs.append(ctx.Process(target=exec, args=(CHILD, {"conn": child})))
                procs[-1].start()
                conns.append(parent)
            (server, *seen), (server2, *_) = (c.recv() for c in conns)
            assert seen == [str(tmp_path), "seen", os.environ.get("PYTHONPATH"), None, featcli.__file__]
            assert server == server2 != os.getpid()
            os.kill(server, signal.SIGTERM)
            os.kill(server, signal.SIGINT)
            time.sleep(0.5)
            assert procs[0].is_alive() and procs[1].is_alive()  # the server is: it reports their ends
            conns[0].send(None)
            os.kill(procs[1].pid, signal.SIGTERM)  # before any handler of its own: the default, death
            for p in procs:
                p.join(30)
            assert [p.exitcode for p in procs] == [0, -signal.SIGTERM]
            assert "FEATCLI_FORKSERVER_ENV" not in os.environ
        finally:  # the server ends once its children have
            for p in procs:
                p.kill()
    with pytest.raises(ProcessLookupError):  # stopped and reaped: nothing outlives the batch
        os.kill(server, 0)


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_to_the_process_group_stops_the_batch_cleanly(tmp_path: Path) -> None:
    """``timeout 60 featcli run ... --processes 2`` sends SIGTERM to the parent, the workers and the fork
    server alike: the server must not die of it (the parent would take the workers for dead while they
    finish their images), and the batch ends as with a SIGTERM to the parent alone."""
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(src / f"{i:02d}.png",
                                                                                 compress_level=0)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "featcli", "run", str(src), "conv:out=16,k=5,p=2", "relu", "--stages", "all",
           "--engine", "torch", "--out-dir", str(out), "--jsonl", "--processes", "2", "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first, proc.communicate()[1]
    os.killpg(proc.pid, signal.SIGTERM)
    rest, errb = proc.communicate(timeout=120)
    err = errb.decode()
    records = [json.loads(line) for line in [first, *rest.splitlines()] if line.strip()]
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "interrupted" in err, err
    present = sorted(p.name for p in out.iterdir())
    assert not [n for n in present if n.startswith(".") or n.endswith(".part")], present
    assert present == sorted(Path(f).name for r in records for f in r["outputs"]), err
    assert [r["index"] for r in records] == sorted(r["index"] for r in records)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # no process of the group is left behind (the last ones are ending)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(subprocess.run(["ps", "-o", "pid,stat,args", "-g", str(proc.pid)], text=True,
                                            capture_output=True, check=False).stdout)
