"""Ctrl-C or SIGTERM during ``featcli run --ray local``: exit 130 or 143, one ``interrupted`` line, no temp file,
and the files present are exactly those of the records printed (parts still running are removed)."""

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

pytest.importorskip("ray")
pytest.importorskip("ray.data")
ROOT = Path(featcli.__file__).parents[1]


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_a_ray_batch_with_a_record_for_every_file(tmp_path: Path, signum: int) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(48):
        Image.fromarray(rng.integers(0, 255, (320, 320, 3), dtype=np.uint8)).save(src / f"{i:02d}.png",
                                                                                 compress_level=0)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "featcli", "run", str(src), "conv:w=sobel_x+sobel_y,p=1", "magnitude", "relu",
           "--engine", "torch", "--batch-size", "2", "--stages", "all", "--out-dir", str(out), "--jsonl",
           "--ray", "local"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FEATCLI_DEBUG": ""}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # the first part is in: the other actor is inside its part
    assert first, proc.communicate()[1]
    proc.send_signal(signum)
    rest, errb = proc.communicate(timeout=180)
    err = errb.decode()
    records = [json.loads(line) for line in [first, *rest.splitlines()] if line.strip()]

    assert proc.returncode == 128 + signum, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and any(ln.startswith("interrupted: ") for ln in lines), err
    assert 1 <= len(records) < 48, "the batch ended before the signal; make it longer"
    assert all(r["status"] == "ok" for r in records)
    assert [r["index"] for r in records] == sorted(r["index"] for r in records)
    present = sorted(p.name for p in out.iterdir())
    assert not [n for n in present if n.startswith(".")]  # no .NAME.*.part
    assert present == sorted(Path(f).name for r in records for f in r["outputs"])
    for name in present:
        with Image.open(out / name) as im:
            im.load()  # complete
