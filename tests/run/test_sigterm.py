"""SIGTERM (what ``kill`` and ``timeout`` send) stops a batch like Ctrl-C: exit 143, no temp file, every file
left complete, and the records printed are exactly the images whose files exist."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import featcli

ROOT = Path(featcli.__file__).parents[1]


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("engine", ["numpy", pytest.param("torch", marks=pytest.mark.slow)])
def test_sigterm_stops_a_batch_cleanly(tmp_path: Path, engine: str) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (384, 384, 3), dtype=np.uint8)).save(src / f"{i:02d}.png",
                                                                                 compress_level=0)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "featcli", "run", str(src), "conv:w=sobel_x+sobel_y,p=1", "magnitude", "relu",
           "--engine", engine, "--batch-size", "2", "--stages", "all", "--out-dir", str(out),
           "-o", str(out / "{stem}_grid.png"), "--save", str(out / "{stem}.npz"), "--jsonl"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEATCLI_DEBUG": ""}
    # Unbuffered: readline must not read ahead the records that communicate() reads next.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first, proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    rest, errb = proc.communicate(timeout=120)
    err = errb.decode()
    records = [json.loads(line) for line in [first, *rest.splitlines()] if line.strip()]

    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted" in err and "Traceback" not in err
    assert 1 <= len(records) < 40, "the batch ended before the signal; make it longer"
    assert all(r["status"] == "ok" for r in records), records
    assert [r["index"] for r in records] == sorted(r["index"] for r in records)
    present = sorted(p.name for p in out.iterdir())
    assert not [n for n in present if n.endswith(".part") or n.startswith(".")]
    published = sorted(Path(f).name for r in records for f in r["outputs"])
    assert present == published, ([r["index"] for r in records], present, err)
    for name in present:
        if name.endswith(".png"):
            with Image.open(out / name) as im:
                im.load()
        else:
            with np.load(out / name) as z:
                assert set(z.files) == {"s1_conv", "s2_magnitude", "s3_relu"}


def _to_this_thread(signum: int) -> None:
    """Send ``signum`` to this (the main) thread: ``os.kill`` to the process may land on another thread of it
    (a pool left by an earlier test), whose handler can run after the code that expects it."""
    import threading

    signal.pthread_kill(threading.get_ident(), signum)


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix", reason="POSIX signals")
def test_sigterm_waits_for_a_section_and_exits_143() -> None:
    from featcli.cli.signals import sigterm_as_interrupt
    from featcli.io.outputs import uninterrupted

    before = signal.getsignal(signal.SIGTERM)
    steps: list[str] = []
    with pytest.raises(SystemExit) as stop, sigterm_as_interrupt():
        try:
            with uninterrupted():
                _to_this_thread(signal.SIGTERM)
                steps.append("section finished")  # the interrupt waits for the end of the section
        except KeyboardInterrupt:
            steps.append("interrupted")
            _to_this_thread(signal.SIGTERM)  # a second SIGTERM does not cut the cleanup short
            steps.append("cleaned up")
            raise SystemExit(130) from None  # what the CLI does with KeyboardInterrupt
    assert steps == ["section finished", "interrupted", "cleaned up"]
    assert stop.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before
    # Python's own Ctrl-C handler, as a process started from a terminal has it (a job started in the background
    # by a non-interactive shell inherits SIGINT ignored, and Python then keeps it ignored)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with sigterm_as_interrupt():  # Ctrl-C keeps KeyboardInterrupt and its own exit code
            with pytest.raises(KeyboardInterrupt):
                _to_this_thread(signal.SIGINT)
                for _ in range(1000):
                    pass
    finally:
        signal.signal(signal.SIGINT, inherited)
