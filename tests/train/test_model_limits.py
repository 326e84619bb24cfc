"""Model files that do not fit (issue #23): the memory budget, the metadata's types and ranges, an input size
its loading options cannot give, and one validator (:func:`featcli.engine.network.open_model`) for every
reader."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from featcli.cli import app
from featcli.engine.network import open_model
from featcli.errors import WeightsError
from featcli.io.modelfile import ModelFile, ModelMeta, meta_to_strings


def _sparse_model(p: Path, out: int = 8192, n_in: int = 32768) -> Path:
    """A model file whose stack ends in a ``out x n_in`` linear, its data a hole (no disk, no bytes written)."""
    meta = ModelMeta(("flatten", f"linear:out={out}"), tuple(f"c{i}" for i in range(out)), (1, 128, n_in // 128),
                     {"channels": "gray"}, {}, "0.1.0")
    w = out * n_in * 4
    header = {"__metadata__": meta_to_strings(meta),
              "s2.weight": {"dtype": "F32", "shape": [out, n_in], "data_offsets": [0, w]},
              "s2.bias": {"dtype": "F32", "shape": [out], "data_offsets": [w, w + out * 4]}}
    h = json.dumps(header).encode()
    with p.open("wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + w + out * 4)
    return p


@pytest.fixture
def no_tensor_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: ModelFile, *args: Any) -> None:
        raise AssertionError("tensors were read before the budget check")

    monkeypatch.setattr(ModelFile, "_load", refuse)


def test_a_huge_linear_is_refused_before_its_tensors_are_read(tmp_path: Path, no_tensor_reads: None) -> None:
    p = _sparse_model(tmp_path / "big.safetensors")  # 1 GiB declared, as in issue #23 (2.1 GB RSS)
    with pytest.raises(WeightsError, match=r"not a usable model: stage 2 'linear:out=8192': weights of "
                                           r"268,443,648 parameters \(float32\) need 1.0 GiB, over the memory "
                                           r"budget of 100.0 MiB"):
        open_model(str(p), max_bytes=100 << 20)


def test_the_file_s_tensors_and_the_network_built_from_them_count_together(tmp_path: Path,
                                                                            no_tensor_reads: None) -> None:
    p = _sparse_model(tmp_path / "m.safetensors", out=64, n_in=4096)  # 1.0 MiB of weights
    with pytest.raises(WeightsError, match=r"its tensors \(1.0 MiB\) and the network built from them \(1.0 MiB\) "
                                           r"need 2.0 MiB, over the memory budget of 1.5 MiB"):
        open_model(str(p), max_bytes=3 << 19)


def test_run_model_passes_max_memory_to_the_model_file(tmp_path: Path, runner: CliRunner,
                                                       no_tensor_reads: None) -> None:
    p = _sparse_model(tmp_path / "big.safetensors")
    res = runner.invoke(app, ["run", "sample:shapes", "--model", str(p), "--max-memory", "100M"])
    assert res.exit_code == 1 and "over the memory budget of 100.0 MiB" in res.stderr, res.output
