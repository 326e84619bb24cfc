"""The run layer's guarantees: one path for one image and for many, checks before compute, streaming batches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.enums import Stream
from featcli.errors import OutputError
from featcli.run.batch import Record, run_batch
from featcli.run.config import RunConfig
from featcli.run.image import Runner
from featcli.stages.build import build_stack


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(2)
    out = []
    for i in range(3):
        path = tmp_path / f"p{i}.png"
        Image.fromarray(rng.integers(0, 255, (30, 44, 3), dtype=np.uint8)).save(path)
        out.append(path)
    return out


def test_json_record_has_the_same_keys_for_one_input_and_many(runner: CliRunner, photos: list[Path],
                                                              tmp_path: Path) -> None:
    stages = ["conv:w=sobel_x+sobel_y,p=1", "magnitude"]
    one = runner.invoke(app, ["run", str(photos[0]), *stages, "--json"])
    many = runner.invoke(app, ["run", str(photos[0]), str(photos[1]), *stages, "--json"])
    assert one.exit_code == 0 and many.exit_code == 0, one.output + many.output
    single = json.loads(one.stdout)
    records = [json.loads(line) for line in many.stdout.splitlines()]
    assert len(records) == 2
    assert set(single) == set(records[0]) == set(records[1])
    assert {"path", "index", "status", "device", "engine", "stages"} <= set(single)


def test_destinations_are_refused_before_any_compute(photos: list[Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"not mine")

    def no_compute(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("computed before the destination check")

    monkeypatch.setattr(Runner, "execute", no_compute)
    cfg = RunConfig(stack=tuple(build_stack(["relu"])), output=str(taken))
    with pytest.raises(OutputError, match="exists"):
        Runner(cfg).process(str(photos[0]))
    assert taken.read_bytes() == b"not mine"


def test_a_batch_streams_when_asked(photos: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for stream in (Stream.ON, Stream.OFF):
        cfg = RunConfig(stack=tuple(build_stack(["conv:out=6,k=3,p=1", "relu"])), stream=stream,
                        output=str(out / ("{stem}_" + stream.value + ".png")))
        got: list[Record] = []
        run_batch([str(p) for p in photos], cfg, emit=got.append, batch_size=4)
        assert [r.status for r in got] == ["ok"] * 3
        last = [r.outcome.results[-1] for r in got]
        if stream is Stream.ON:
            assert all(r.display is not None and r.tensor.numel() == 0 for r in last)
            streamed = [(r.min, r.max, r.mean) for r in last]
        else:
            assert all(r.display is None for r in last)
            whole = [(r.min, r.max, r.mean) for r in last]
    np.testing.assert_allclose(streamed, whole, atol=1e-6)


def test_skip_existing_without_outputs_runs_everything(photos: list[Path]) -> None:
    got: list[Record] = []
    summary = run_batch([str(p) for p in photos], RunConfig(stack=tuple(build_stack(["relu"]))), emit=got.append,
                        skip_existing=True)
    assert [r.status for r in got] == ["ok"] * 3
    assert (summary.ok, summary.skipped) == (3, 0)


def test_skip_existing_skips_only_complete_outputs(photos: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    cfg = RunConfig(stack=tuple(build_stack(["relu"])), output=str(out / "{stem}.png"))
    (out / "p1.png").write_bytes(b"done before")
    got: list[Record] = []
    run_batch([str(p) for p in photos], cfg, emit=got.append, skip_existing=True)
    assert [r.status for r in got] == ["ok", "skipped", "ok"]
    assert (out / "p1.png").read_bytes() == b"done before"


def test_a_mismatch_reaches_the_user_as_a_cross_and_exit_1(runner: CliRunner, photos: list[Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from featcli.engine import numpy_backend
    from featcli.stages.registry import Op

    monkeypatch.setitem(numpy_backend.OPS.impls, Op.ABS, lambda stage, env: lambda x: np.abs(x)[:, :, 1:])
    res = runner.invoke(app, ["run", str(photos[0]), "conv:w=sobel_x,p=1", "abs"])
    assert res.exit_code == 1
    assert "✗" in res.stdout and "✓" in res.stdout
    assert "stage 2 'abs': the formula predicted [1, 1, 30, 44] but numpy produced [1, 1, 29, 44]" in res.stderr


def test_one_runner_reads_a_checkpoint_once(photos: list[Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    ckpt = tmp_path / "w.pt"
    torch.save({"conv1.weight": torch.randn(4, 3, 3, 3)}, ckpt)
    import featcli.engine.plan as plan_module

    calls = []
    real = plan_module.compile_plan

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(plan_module, "compile_plan", counting)
    extra = tmp_path / "copy.png"
    shutil.copy(photos[0], extra)
    got: list[Record] = []
    run_batch([str(photos[0]), str(extra)], RunConfig(stack=tuple(build_stack([f"conv:w={ckpt}:conv1.weight"]))),
              emit=got.append, batch_size=1)
    assert [r.status for r in got] == ["ok", "ok"]
    assert len(calls) == 1  # one plan (weights resolved once) for two same-size images
