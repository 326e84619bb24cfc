"""The benchmark suite's quick mode runs every scenario and reports numbers (timing targets are not asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"shape", "sobel12mp", "grid16", "conv64", "batch200", "processes", "model200", "onnx640", "tutorial",
             "train_digits", "train_orientation", "top200", "topnet", "topmem", "cam20"}


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v and v >= 0


@pytest.mark.slow
def test_quick_suite_reports_every_scenario_as_json() -> None:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)

    assert doc["quick"] is True and doc["runs"] == 1
    assert set(doc["scenarios"]) == SCENARIOS
    assert doc["summary"]["ERROR"] == 0
    assert all(_number(x) for x in doc["machine"]["load_start"] + doc["machine"]["load_end"])
    for name, rows in doc["scenarios"].items():
        assert rows, name
        assert any(r["tool"].startswith("featcli") for r in rows), name
        for r in rows:
            assert r["scenario"] == name
            assert r["status"] in {"PASS", "MISS", "SKIP", ""}, r
            if r["status"] == "SKIP":
                assert "install" in r["notes"], r
                continue
            if r["seconds"] is None:  # a figure derived from other rows (CPU x python -c pass, q/CPU-s)
                assert r["target"] and not r["runs"] and _number(r["measured"]), r
            else:
                assert _number(r["seconds"]) and r["runs"] and all(_number(t) for t in r["runs"]), r
            assert r["rss_mb"] is None or _number(r["rss_mb"]), r
            assert r["ratio"] is None or _number(r["ratio"]), r
            if r["unit"] and r["seconds"] is not None:  # a derived row's rate is its measured figure
                assert _number(r["rate"]), r
            if r["target"]:
                assert r["status"] in {"PASS", "MISS"} and r["measured"] is not None, r

    rows = {(r["scenario"], r["tool"]): r for rs in doc["scenarios"].values() for r in rs}
    # Correctness, not speed: the tutorial loops and featcli's conv agree; whole processes report their RSS.
    assert rows["tutorial", "numpy nested loops"]["status"] == "PASS"
    assert _number(rows["sobel12mp", "featcli"]["rss_mb"]) and rows["sobel12mp", "featcli"]["rss_mb"] > 0
    assert _number(rows["conv64", "featcli conv stage"]["seconds"])
    assert rows["batch200", "featcli (one process)"]["items"] == 20


def test_unknown_scenario_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "shape,nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "unknown scenario nope" in proc.stderr and "sobel12mp" in proc.stderr


def test_tutorial_loops_match_torch_conv2d() -> None:
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    if str(ROOT) not in sys.path:  # benchmarks/ is not installed; `python -m pytest` from the root finds it anyway
        sys.path.insert(0, str(ROOT))
    from benchmarks.peers import tutorial_conv

    rng = np.random.default_rng(0)
    x = rng.random((2, 9, 11, 3), dtype=np.float32)
    k = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    want = torch.nn.functional.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(k).permute(3, 2, 0, 1),
                                      stride=2, padding=1)
    got = tutorial_conv(x, k, padding=1, stride=2)
    torch.testing.assert_close(torch.from_numpy(got).permute(0, 3, 1, 2).float(), want, rtol=1e-5, atol=1e-5)
