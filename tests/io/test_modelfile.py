"""The featcli model file: a round trip is exact, the ``--code`` Net loads it, hostile files are refused."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
import torch

from featcli.errors import OutputError, WeightsError
from featcli.io.modelfile import FIELD_KEYS, FORMAT, FORMAT_KEY, ModelMeta, is_model_file, read_model, write_model
from featcli.shape.code import module_code
from featcli.shape.service import InputResolver, query

STACK = ("conv:out=4,k=3", "bn", "relu", "flatten", "linear:out=10")
META = ModelMeta(stack=STACK, classes=tuple("0123456789"), input_shape=(1, 8, 8),
                 loading={"gray": True, "size": [8, 8]},
                 training={"epochs": 3, "seed": 0, "optimizer": "adam", "val_acc": 0.97},
                 featcli_version="0.1.0")


def _net() -> torch.nn.Module:
    report = query(InputResolver(), "1x1x8x8", list(STACK))
    scope: dict[str, Any] = {}
    exec(compile(module_code(report, "test"), "<featcli --code>", "exec"), scope)  # noqa: S102 - code under test
    torch.manual_seed(0)
    net: torch.nn.Module = scope["Net"]()
    net.train()
    net(torch.randn(4, 1, 8, 8))  # running statistics and num_batches_tracked move off their defaults
    return net


def test_round_trip_is_exact_and_the_code_net_loads_it(tmp_path: Path) -> None:
    net = _net()
    sd = net.state_dict()
    sd["half"] = torch.tensor([1.5, -2.25], dtype=torch.float16)
    sd["brain"] = torch.tensor([[0.1, 3e38]], dtype=torch.bfloat16)
    p = tmp_path / "m.safetensors"
    write_model(p, sd, META)
    assert is_model_file(p)
    mf = read_model(p)
    assert mf.meta == META and mf.path == p
    back = mf.tensors()
    assert back.keys() == sd.keys()
    for k, t in sd.items():
        assert back[k].dtype == t.dtype and back[k].shape == t.shape and back[k].is_contiguous()
        assert torch.equal(back[k].view(torch.uint8) if t.dim() else back[k], t.view(torch.uint8) if t.dim() else t)
    assert int(back["s2.num_batches_tracked"]) == 1
    fresh = _net()
    del back["half"], back["brain"]
    fresh.load_state_dict(back)
    net.eval()
    fresh.eval()
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(net(x), fresh(x))
    assert mf.tensor("s1.weight").shape == (4, 1, 3, 3)
    with pytest.raises(WeightsError, match="no tensor 'nope'"):
        mf.tensor("nope")


def test_no_overwrite_without_force_and_nothing_half_written(tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    write_model(p, {"w": torch.ones(2)}, META)
    with pytest.raises(OutputError, match="already exists"):
        write_model(p, {"w": torch.zeros(2)}, META)
    assert torch.equal(read_model(p).tensors()["w"], torch.ones(2))
    write_model(p, {"w": torch.zeros(2)}, META, force=True)
    assert torch.equal(read_model(p).tensors()["w"], torch.zeros(2))
    with pytest.raises(WeightsError, match="NaN"):
        write_model(tmp_path / "nan.safetensors", {"w": torch.tensor([float("nan")])}, META)
    with pytest.raises(WeightsError, match="float64"):
        write_model(tmp_path / "f64.safetensors", {"w": torch.ones(2, dtype=torch.float64)}, META)
    bad = ModelMeta(("conv:out=2,kk=3",), ("a",), (1, 4, 4), {}, {}, "0.1.0")
    with pytest.raises(WeightsError, match="kk"):
        write_model(tmp_path / "bad.safetensors", {}, bad)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.safetensors"]


# --- hostile files ------------------------------------------------------------------------------------


def _strings(**change: str | None) -> dict[str, str]:
    out = {FORMAT_KEY: FORMAT, FIELD_KEYS["stack"]: json.dumps(list(STACK)),
           FIELD_KEYS["classes"]: json.dumps(list("0123456789")), FIELD_KEYS["input_shape"]: "[1, 8, 8]",
           FIELD_KEYS["loading"]: "{}", FIELD_KEYS["training"]: "{}", FIELD_KEYS["featcli_version"]: '"0.1.0"'}
    for k, v in change.items():
        key = FIELD_KEYS.get(k, FORMAT_KEY if k == "format" else k)
        if v is None:
            out.pop(key)
        else:
            out[key] = v
    return out


def _raw(header: dict[str, Any], data: bytes, *, length: int | None = None) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def _good_header(meta: dict[str, str] | None = None) -> dict[str, Any]:
    h: dict[str, Any] = {"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}
    if meta is not None:
        h["__metadata__"] = meta
    return h


W = struct.pack("<4f", 1.0, -2.0, 0.5, 0.25)
NAN = struct.pack("<4f", 1.0, float("nan"), 0.5, 0.25)

HOSTILE: dict[str, tuple[bytes | None, str]] = {
    "empty": (b"", "the file is empty"),
    "short": (b"\x01\x02\x03", "3 bytes long"),
    "huge header length": (struct.pack("<Q", 1 << 60) + b"{}", "header"),
    "header past end": (_raw(_good_header(_strings()), W, length=10_000), "header"),
    "not json": (struct.pack("<Q", 4) + b"{{{{", "not JSON"),
    "json list": (_raw([1, 2], b""), "not a JSON object"),  # type: ignore[arg-type]
    "truncated data": (_raw(_good_header(_strings()), W[:12]), "past the end"),
    "offsets past end": (_raw({**_good_header(_strings()), "w": {"dtype": "F32", "shape": [2, 2],
                                                                  "data_offsets": [16, 32]}}, W), "past the end"),
    "overlapping": (_raw({**_good_header(_strings()), "v": {"dtype": "F32", "shape": [2],
                                                             "data_offsets": [8, 16]}}, W), "overlaps"),
    "trailing bytes": (_raw(_good_header(_strings()), W + b"junk"), "belong to no tensor"),
    "shape vs offsets": (_raw({**_good_header(_strings()), "w": {"dtype": "F32", "shape": [3],
                                                                  "data_offsets": [0, 16]}}, W), "needs 12 bytes"),
    "bad dtype": (_raw({**_good_header(_strings()), "w": {"dtype": "F64", "shape": [2],
                                                           "data_offsets": [0, 16]}}, W), "dtype 'F64'"),
    "object dtype": (_raw({**_good_header(_strings()), "w": {"dtype": {"a": 1}, "shape": [4],
                                                              "data_offsets": [0, 16]}}, W), "dtype"),
    "negative shape": (_raw({**_good_header(_strings()), "w": {"dtype": "F32", "shape": [-4],
                                                                "data_offsets": [0, 16]}}, W), "shape"),
    "duplicate key": (struct.pack("<Q", 26) + b'{"a": {}, "a": {}}        ', "appears twice"),
    "no metadata": (_raw(_good_header(), W), "not a featcli model (no featcli metadata)"),
    "other metadata": (_raw(_good_header({"format": "pt"}), W), "not a featcli model"),
    "future format": (_raw(_good_header(_strings(format="featcli-model/9")), W), "featcli-model/9"),
    "missing field": (_raw(_good_header(_strings(classes=None)), W), "no 'featcli.classes'"),
    "field not json": (_raw(_good_header(_strings(stack="[conv")), W), "'featcli.stack' is not JSON"),
    "stack not list": (_raw(_good_header(_strings(stack='"conv"')), W), "stack is a JSON string, expected a JSON list"),
    "bad stage": (_raw(_good_header(_strings(stack='["conv:out=4,zz=3"]')), W), "zz"),
    "empty stack": (_raw(_good_header(_strings(stack="[]")), W), "0 stages"),
    "duplicate class": (_raw(_good_header(_strings(classes='["a", "b", "a"]')), W), "'a' appears twice"),
    "empty class": (_raw(_good_header(_strings(classes='["a", ""]')), W), "class name ''"),
    "class not str": (_raw(_good_header(_strings(classes='["a", 3]')), W), "not a string"),
    "input shape 2 ints": (_raw(_good_header(_strings(input_shape="[8, 8]")), W), "input_shape"),
    "input shape zero": (_raw(_good_header(_strings(input_shape="[1, 0, 8]")), W), "input_shape"),
    "input shape float": (_raw(_good_header(_strings(input_shape="[1, 8.0, 8]")), W), "input_shape"),
    "input shape huge": (_raw(_good_header(_strings(input_shape="[1, 99999999999, 8]")), W), "input_shape"),
    "input shape bool": (_raw(_good_header(_strings(input_shape="[true, 8, 8]")), W), "input_shape"),
    "training not dict": (_raw(_good_header(_strings(training="[]")), W), "a JSON list, expected a JSON object"),
    "NaN in json": (_raw(_good_header(_strings(training='{"a": NaN}')), W), "not JSON"),
    "metadata not strings": (_raw(_good_header({FORMAT_KEY: 1}), W), "mapping of strings"),  # type: ignore[dict-item]
    "png renamed": (b"\x89PNG\r\n\x1a\n" + bytes(64), "header"),
    "directory": (None, "not found (or not a file)"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_model_files_are_refused_with_one_line(tmp_path: Path, case: str) -> None:
    data, expected = HOSTILE[case]
    p = tmp_path / "m.safetensors"
    if data is None:
        p.mkdir()
    else:
        p.write_bytes(data)
    with pytest.raises(WeightsError) as info:
        read_model(p)
    msg = str(info.value)
    assert expected in msg and msg.startswith(str(p)) and "\n" not in msg, msg
    assert not is_model_file(p) or case not in ("empty", "png renamed", "directory", "no metadata")


def test_nan_weights_are_refused_when_loaded(tmp_path: Path) -> None:
    p = tmp_path / "m.safetensors"
    p.write_bytes(_raw(_good_header(_strings()), NAN))
    mf = read_model(p)  # the header is fine; the values are checked when read
    with pytest.raises(WeightsError, match="'w' holds 1 NaN or infinite values"):
        mf.tensors()


def test_a_plain_safetensors_file_is_readable_as_weights_not_as_a_model(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    p = tmp_path / "plain.safetensors"
    save_file({"conv1.weight": torch.ones(2, 1, 3, 3)}, str(p))
    assert not is_model_file(p)
    with pytest.raises(WeightsError, match="conv:w=FILE:KEY"):
        read_model(p)


@pytest.mark.parametrize("content", [b"api_key=sk-1234567890abcdef\n",
                                     b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": "secret\xff"}'])
def test_a_file_that_is_not_safetensors_is_named_never_echoed(tmp_path: Path, content: bytes) -> None:
    # the first 8 bytes read as a length (or the header's bytes) are the file's content: the message names
    # the position and never prints them, in any form
    p = tmp_path / "notes.safetensors"
    p.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        read_model(p)
    msg = str(info.value)
    n = int.from_bytes(content[:8], "little")
    assert msg.startswith(str(p)), msg
    said = msg[len(str(p)):]  # the temporary path itself may hold the digits (pytest-16)
    assert "sk-1234" not in said and "secret" not in said and f"{n:,}" not in said and str(n) not in said, msg
