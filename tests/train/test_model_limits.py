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


def _raw_model(p: Path, stack: list[str], *, shape: tuple[int, int, int] = (1, 8, 8),
               loading: dict[str, Any] | None = None, training: dict[str, Any] | None = None) -> Path:
    """A model file written without featcli's checks (as a hostile or hand-edited one would be): ``s1`` is a
    4x1x3x3 conv's tensors whatever the stack says, then the stack's own trained tensors."""
    import torch
    from safetensors.torch import save

    from featcli.io.modelfile import FIELD_KEYS, FORMAT, FORMAT_KEY

    values = {"stack": stack, "classes": ["a", "b"], "input_shape": list(shape),
              "loading": {"channels": "gray"} if loading is None else loading,
              "training": {} if training is None else training, "featcli_version": "0.1.0"}
    meta = {FORMAT_KEY: FORMAT, **{FIELD_KEYS[k]: json.dumps(v) for k, v in values.items()}}
    tensors = {"s1.weight": torch.zeros(4, shape[0], 3, 3), "s1.bias": torch.zeros(4)}
    p.write_bytes(save(tensors, metadata=meta))
    return p


#: Model files ``run --model`` refuses that ``kernels show MODEL:1`` used to show (issue #23).
REFUSED = {
    "weights from a file": ({"stack": ["conv:w=/etc/passwd", "flatten", "linear:out=2"]}, "learns its own"),
    "a huge conv": ({"stack": ["conv:out=1000000000,k=3", "flatten", "linear:out=2"]}, "over the memory budget"),
    "rgb input, gray loading": ({"stack": ["conv:out=4,k=3", "flatten", "linear:out=2"], "shape": (3, 8, 8)},
                                "input_shape [3, 8, 8] has 3 channels but its loading options (channels=gray, "
                                "alpha=drop) give 1: the network cannot take the images it would load"),
    "gray input, rgb loading": ({"stack": ["conv:out=4,k=3", "flatten", "linear:out=2"],
                                     "loading": {"channels": "rgb", "alpha": "keep"}},
                                "has 1 channel but its loading options (channels=rgb, alpha=keep) give 3 or 4"),
    "unknown channels": ({"stack": ["conv:out=4,k=3"], "loading": {"channels": "cmyk"}},
                         'loading option channels "cmyk" is not one of rgb, gray, keep'),
    "seed a string": ({"stack": ["conv:out=4,k=3", "flatten", "linear:out=2"], "training": {"seed": "0"}},
                      'training seed "0" is not an integer from 0 to 9223372036854775807'),
    "seed too big": ({"stack": ["conv:out=4,k=3", "flatten", "linear:out=2"], "training": {"seed": 2**70}},
                     "training seed 1180591620717411303424 is not an integer"),
    "negative val_split": ({"stack": ["conv:out=4,k=3", "flatten", "linear:out=2"], "training": {"val_split": -0.5}},
                           "training val_split -0.5 is not a number in [0, 1)"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_every_reader_refuses_what_run_model_refuses(case: str, tmp_path: Path, runner: CliRunner) -> None:
    kwargs, message = REFUSED[case]
    p = _raw_model(tmp_path / "m.safetensors", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(WeightsError) as info:
        open_model(str(p))
    assert message in str(info.value)
    for argv in (["kernels", "show", f"{p}:1"], ["run", "sample:shapes", "--model", str(p)],
                 ["eval", "digits", "--model", str(p)]):
        res = runner.invoke(app, argv)
        assert res.exit_code == 1 and message in res.stderr and res.stderr.count("\n") == 1, (argv, res.output)
        assert res.stderr.startswith(f"featcli: error: {p}"), res.stderr


def test_a_per_image_failure_under_json_also_says_so_on_stderr(tmp_path: Path, runner: CliRunner,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from PIL import Image

    from featcli.errors import ImageLoadError
    from featcli.io.modelfile import ModelMeta, write_model
    from featcli.run.image import Runner

    p = tmp_path / "m.safetensors"
    tensors = {"s1.weight": torch.zeros(4, 1, 3, 3), "s1.bias": torch.zeros(4), "s3.weight": torch.zeros(2, 144),
               "s3.bias": torch.zeros(2)}
    write_model(p, tensors, ModelMeta(("conv:out=4,k=3", "flatten", "linear:out=2"), ("a", "b"), (1, 8, 8),
                                      {"channels": "gray"}, {}, "0.1.0"))
    img = tmp_path / "x.png"
    Image.new("L", (8, 8)).save(img)

    def fail(self: Runner, path: str, **kwargs: Any) -> None:
        raise ImageLoadError("cannot decode", path=path)

    monkeypatch.setattr(Runner, "process", fail)
    res = runner.invoke(app, ["run", str(img), "--model", str(p), "--json"])
    assert res.exit_code == 1, res.output
    assert json.loads(res.stdout)["error"] == f"{img}: cannot decode"
    assert res.stderr == f"featcli: error: {img}: cannot decode\n"
