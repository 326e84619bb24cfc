"""Learned conv weights: every format made here, and every refusal (a malicious pickle runs nothing)."""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from featcli.enums import KernelMode
from featcli.errors import KernelError, ShapeError, WeightsError
from featcli.kernels import conv_weight, conv_weight_shape, expand, resolve
from featcli.kernels.learned import inspect_file, is_weights_ref, load_weight, split_ref


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3)
        self.bn1 = torch.nn.BatchNorm2d(8)
        self.conv2 = torch.nn.Conv2d(8, 4, 5, bias=False)
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc(self.conv2(torch.relu(self.bn1(self.conv1(x)))).mean((2, 3)))
        return out


@pytest.fixture(scope="module")
def net() -> SmallCNN:
    torch.manual_seed(0)
    net = SmallCNN()
    net.eval()
    return net


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, net: SmallCNN) -> Path:
    d = tmp_path_factory.mktemp("weights")
    sd = net.state_dict()
    torch.save(sd, d / "sd.pt")
    torch.save({"epoch": 3, "state_dict": sd, "optimizer": {"lr": 0.1}}, d / "nested.pth")
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}}, d / "dp.ckpt")
    torch.save(sd, d / "legacy.pt", _use_new_zipfile_serialization=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated, still loadable
        torch.jit.script(net).save(str(d / "scripted.pt"))  # type: ignore[no-untyped-call]
    np.save(d / "conv.npy", sd["conv1.weight"].numpy())
    np.savez(d / "two.npz", a=sd["conv1.weight"].numpy(), b=sd["conv2.weight"].numpy().astype(np.float16))
    np.savez(d / "one.npz", only=sd["conv2.weight"].numpy())
    torch.save({"w": sd["conv1.weight"].half()}, d / "half.pt")
    torch.save(sd["conv1.weight"], d / "bare.pt")
    return d


def test_state_dict_zip(files: Path, net: SmallCNN) -> None:
    lw = load_weight(f"{files}/sd.pt:conv1.weight")
    assert lw.format == "torch" and lw.key == "conv1.weight" and lw.shape == (8, 3, 3, 3)
    torch.testing.assert_close(lw.weight, net.conv1.weight.detach())
    assert lw.bias_key == "conv1.bias" and net.conv1.bias is not None
    torch.testing.assert_close(lw.bias, net.conv1.bias.detach())
    assert lw.label == "conv1" and lw.source_dtype == "float32"
    nob = load_weight(f"{files}/sd.pt:conv2.weight")
    assert nob.bias is None and nob.shape == (4, 8, 5, 5)


@pytest.mark.parametrize("ref", ["nested.pth:conv1.weight", "nested.pth:state_dict.conv1.weight",
                                 "dp.ckpt:conv1.weight", "dp.ckpt:module.conv1.weight",
                                 "dp.ckpt:model.module.conv1.weight", "legacy.pt:conv1.weight",
                                 "sd.pt:*conv1.weight", "sd.pt:conv1.w*"])
def test_unwrapping_prefixes_legacy_and_globs(files: Path, net: SmallCNN, ref: str) -> None:
    lw = load_weight(f"{files}/{ref}")
    torch.testing.assert_close(lw.weight, net.conv1.weight.detach())
    assert lw.bias is not None


def test_legacy_format_detected(files: Path) -> None:
    assert load_weight(f"{files}/legacy.pt:conv2.weight").format == "torch-legacy"


def test_torchscript_needs_opt_in(files: Path, net: SmallCNN) -> None:
    ref = f"{files}/scripted.pt:conv1.weight"
    with pytest.raises(WeightsError, match="TorchScript archive, which is code.*--trust-torchscript"):
        load_weight(ref)
    with pytest.raises(WeightsError, match="TorchScript"):
        conv_weight_shape([ref], 3, KernelMode.SUM)
    lw = load_weight(ref, allow_torchscript=True)
    assert lw.format == "torchscript"
    torch.testing.assert_close(lw.weight, net.conv1.weight.detach())
    assert conv_weight_shape([ref], 3, KernelMode.SUM, allow_torchscript=True) == (8, 3, 3, 3, 1)


def test_safetensors_with_bf16(tmp_path: Path, net: SmallCNN) -> None:
    st = pytest.importorskip("safetensors.torch")
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    sd["conv2.weight"] = sd["conv2.weight"].to(torch.bfloat16)
    st.save_file(sd, str(tmp_path / "m.safetensors"))
    lw = load_weight(f"{tmp_path}/m.safetensors:conv1.weight")
    assert lw.format == "safetensors" and lw.bias_key == "conv1.bias"
    torch.testing.assert_close(lw.weight, net.conv1.weight.detach())
    b = load_weight(f"{tmp_path}/m.safetensors:conv2.weight")
    assert b.weight.dtype == torch.float32 and b.source_dtype == "bfloat16"
    torch.testing.assert_close(b.weight, net.conv2.weight.detach(), atol=1e-2, rtol=1e-2)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(WeightsError, match="not a valid .safetensors"):
        load_weight(str(junk))


def test_numpy_formats(files: Path, net: SmallCNN) -> None:
    lw = load_weight(f"{files}/conv.npy")
    assert lw.format == "npy" and lw.key == "" and lw.label == "conv"
    torch.testing.assert_close(lw.weight, net.conv1.weight.detach())
    b = load_weight(f"{files}/two.npz:b")
    assert b.format == "npz" and b.source_dtype == "float16" and b.weight.dtype == torch.float32
    assert load_weight(f"{files}/one.npz").key == "only"
    with pytest.raises(WeightsError, match="holds 2 conv weights"):
        load_weight(f"{files}/two.npz")
    with pytest.raises(WeightsError, match="drop ':x'"):
        load_weight(f"{files}/conv.npy:x")


def test_fp16_and_single_tensor(files: Path) -> None:
    lw = load_weight(f"{files}/half.pt")  # FILE alone: exactly one conv weight in it
    assert lw.weight.dtype == torch.float32 and lw.source_dtype == "float16" and lw.key == "w"
    assert load_weight(f"{files}/bare.pt").key == ""


def test_key_errors_help(files: Path) -> None:
    with pytest.raises(WeightsError, match=r"no tensor 'conv3.weight' \(did you mean .*conv1.weight"):
        load_weight(f"{files}/sd.pt:conv3.weight")
    with pytest.raises(WeightsError, match="conv weights: conv1.weight \\(8x3x3x3\\), conv2.weight"):
        load_weight(f"{files}/sd.pt:nope")
    with pytest.raises(WeightsError, match="keys match 'conv\\*.weight', pick one"):
        load_weight(f"{files}/sd.pt:conv*.weight")
    with pytest.raises(WeightsError, match="no key matches"):
        load_weight(f"{files}/sd.pt:*attention*")
    with pytest.raises(WeightsError, match="holds 2 conv weights; pick one with FILE:KEY"):
        load_weight(f"{files}/sd.pt")
    with pytest.raises(WeightsError, match="not found"):
        load_weight(f"{files}/missing.pt:conv1.weight")


@pytest.mark.parametrize(
    ("tensor", "msg"),
    [
        (torch.full((2, 3, 3, 3), float("nan")), "NaN"),
        (torch.tensor([[[[1.0, float("inf")]]]]), "Inf"),
        (torch.ones(2, 3, 3, 3, dtype=torch.complex64), "complex"),
        (torch.ones(2, 3, 3, 3, dtype=torch.int64), "integer"),
        (torch.ones(2, 3, 3, 3, dtype=torch.bool), "bool"),
        (torch.ones(2, 3, 3, 3, 3), "5-D"),
        (torch.ones(0, 3, 3, 3), "empty"),
        (torch.ones(8), "1-D"),
        (torch.tensor(1.0), "0-D"),
        (torch.ones(4, 8, 3), "ambiguous"),
        (torch.ones(1, 1, 300, 3), "larger than 255"),
    ],
)
def test_bad_tensors_refused(tmp_path: Path, tensor: Any, msg: str) -> None:
    p = tmp_path / "bad.pt"
    torch.save({"w": tensor}, p)
    with pytest.raises(WeightsError, match=msg):
        load_weight(f"{p}:w")


def test_2d_and_3d_tensors_are_kernels(tmp_path: Path) -> None:
    p = tmp_path / "k.pt"
    torch.save({"edge": torch.tensor([[-1.0, 0.0, 1.0]] * 3), "bank": torch.randn(4, 5, 5)}, p)
    k = resolve(f"{p}:edge")
    assert k.weights == ((-1, 0, 1),) * 3 and k.name == "edge"
    ks = expand(f"{p}:bank")
    assert isinstance(ks, list) and [k.name for k in ks] == [f"bank[{i}]" for i in range(4)]
    assert conv_weight_shape([f"{p}:bank"], 3, KernelMode.DEPTHWISE) == (12, 1, 5, 5, 3)
    assert conv_weight_shape([f"{p}:edge", "sobel_y"], 3, KernelMode.SUM) == (2, 3, 3, 3, 1)


def test_learned_layer_in_a_stage(files: Path, net: SmallCNN) -> None:
    ref = f"{files}/sd.pt:conv1.weight"
    assert conv_weight_shape([ref], 3, KernelMode.SUM) == (8, 3, 3, 3, 1)
    assert conv_weight_shape([ref], 3, KernelMode.GRAY) == (8, 3, 3, 3, 1)  # mode ignored
    cw = conv_weight([ref], 3, KernelMode.SUM)
    assert cw.groups == 1 and not cw.gray and cw.labels[0] == "conv1[0]" and len(cw.labels) == 8
    x = torch.rand(1, 3, 12, 12)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, cw.weight, cw.bias), net.conv1(x))
    with pytest.raises(ShapeError, match="expects 8 input channels, the image has 3"):
        conv_weight_shape([f"{files}/sd.pt:conv2.weight"], 3, KernelMode.SUM)
    with pytest.raises(KernelError, match="must be the only kernel"):
        conv_weight_shape([ref, "sobel_x"], 3, KernelMode.SUM)
    with pytest.raises(KernelError, match="whole conv layer"):
        resolve(ref)


def test_depthwise_learned_layer(tmp_path: Path) -> None:
    p = tmp_path / "dw.pt"
    torch.save({"dw.weight": torch.randn(6, 1, 3, 3)}, p)
    assert conv_weight_shape([f"{p}:dw.weight"], 3, KernelMode.DEPTHWISE) == (6, 1, 3, 3, 3)
    with pytest.raises(ShapeError, match="expects 1 input channels, the image has 3"):
        conv_weight_shape([f"{p}:dw.weight"], 3, KernelMode.SUM)


# --- safety ---------------------------------------------------------------------------------------
class Payload:
    """Unpickling this would create ``marker`` (it calls ``open(marker, 'w')``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


class SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["torch-zip", "torch-legacy", "raw-pickle", "os-system", "raw-pickle-4"])
def test_malicious_pickle_runs_nothing(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    obj = {"conv.weight": torch.ones(1, 1, 3, 3), "x": Payload(marker)}
    if how == "torch-zip":
        torch.save(obj, p)
    elif how == "torch-legacy":
        torch.save(obj, p, _use_new_zipfile_serialization=False)
    elif how == "raw-pickle":
        p.write_bytes(pickle.dumps(obj, protocol=2))
    elif how == "raw-pickle-4":  # framed pickles are refused before any object is looked at
        p.write_bytes(pickle.dumps(obj, protocol=4))
    else:
        p.write_bytes(pickle.dumps({"x": SystemPayload(marker)}, protocol=2))
    for call in (lambda: load_weight(f"{p}:conv.weight"), lambda: inspect_file(p),
                 lambda: conv_weight_shape([f"{p}:conv.weight"], 1, KernelMode.SUM)):
        with pytest.raises(WeightsError) as exc:
            call()
        text = str(exc.value)
        if how == "raw-pickle-4":
            assert "not a PyTorch checkpoint featcli can read safely" in text
        else:
            assert "code or objects featcli will not load (it refers to" in text
        assert "weights_only" not in text
    assert not marker.exists()


def test_object_npy_refused_before_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.npy"
    np.save(p, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(WeightsError, match="Python objects"):
        load_weight(str(p))
    with pytest.raises(WeightsError, match="Python objects"):
        resolve(str(p))
    z = tmp_path / "evil.npz"
    np.savez(z, a=np.array([Payload(marker)], dtype=object))
    with pytest.raises(WeightsError, match="Python objects"):
        load_weight(f"{z}:a")
    assert not marker.exists()


@pytest.mark.parametrize(("shape", "msg"), [((100_000, 100_000), "above the"), ((64, 3, 7, 7), "truncated")])
def test_npy_header_checked_before_allocating(tmp_path: Path, shape: tuple[int, ...], msg: str) -> None:
    p = tmp_path / "lie.npy"
    with p.open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": shape})
        fh.write(b"\x00" * 64)
    with pytest.raises(WeightsError, match=msg):
        load_weight(str(p))


@pytest.mark.parametrize(
    ("content", "msg"),
    [(b"hello world, not a checkpoint", "not a PyTorch checkpoint .neither a zip archive nor a pickle"),
     (b"", "the file is empty"),
     (b"(lp0\nI1\na.", "not a PyTorch checkpoint featcli can read safely"),
     (pickle.dumps([1, 2], protocol=2), "not a readable PyTorch checkpoint"),
     (b"not a checkpoint", "not a PyTorch checkpoint featcli can read safely"),
     (b"PK\x03\x04garbage", "not a readable|damaged|neither")],
)
def test_junk_files(tmp_path: Path, content: bytes, msg: str) -> None:
    p = tmp_path / "junk.pt"
    p.write_bytes(content)
    with pytest.raises(WeightsError, match=msg) as exc:
        load_weight(str(p))
    assert "weights_only" not in str(exc.value)


def test_inspect_lists_conv_weights(files: Path) -> None:
    infos = inspect_file(files / "nested.pth")
    assert [i.key for i in infos] == ["conv1.weight", "conv2.weight"]
    assert infos[0].shape == (8, 3, 3, 3) and infos[0].dtype == "float32" and infos[0].usable
    assert infos[0].min is not None and infos[0].max is not None and infos[0].min < infos[0].max
    every = {i.key: i for i in inspect_file(files / "sd.pt", include_all=True)}
    assert not every["bn1.num_batches_tracked"].usable and "integer" in every["bn1.num_batches_tracked"].note
    assert not every["fc.weight"].usable and "2-D tensor in a checkpoint" in every["fc.weight"].note
    assert inspect_file(files / "conv.npy")[0].key == ""
    with pytest.raises(WeightsError, match="TorchScript"):
        inspect_file(files / "scripted.pt")
    assert len(inspect_file(files / "scripted.pt", allow_torchscript=True)) == 2


def test_refs(tmp_path: Path) -> None:
    p = tmp_path / "a:b.pt"  # a colon inside the file name still splits right
    torch.save({"k": torch.ones(1, 1, 3, 3)}, p)
    assert split_ref(f"{p}:k") == (str(p), "k")
    assert split_ref("model.pt:conv1.weight") == ("model.pt", "conv1.weight")
    assert split_ref("sobel:angle=45") == ("sobel:angle=45", None)
    assert is_weights_ref("x.safetensors:a") and not is_weights_ref("gaussian:size=3")
    assert load_weight(f"{p}:k").shape == (1, 1, 3, 3)
