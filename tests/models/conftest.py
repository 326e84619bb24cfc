"""Shared fixtures of the model routes' tests: the test nets (``nets.py``), exported once per session."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest

NETS = Path(__file__).with_name("nets.py")


def load_nets() -> ModuleType:
    if "featcli_tests_nets" not in sys.modules:
        spec = importlib.util.spec_from_file_location("featcli_tests_nets", NETS)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["featcli_tests_nets"] = module
        spec.loader.exec_module(module)
    return sys.modules["featcli_tests_nets"]


@pytest.fixture(scope="session")
def nets() -> ModuleType:
    return load_nets()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, nets: ModuleType) -> dict[str, Path]:
    """TinyResNet and PNet as ONNX (TorchScript exporter: 0.5 s, not the dynamo one's 1-2 s) and TinyResNet as
    a .pt2, all for a 1x3x64x64 input; plus TinyResNet's state dict."""
    import torch

    folder = tmp_path_factory.mktemp("exported")
    resnet, pnet = nets.tiny_resnet(), nets.PNet().eval()
    x = torch.rand(1, 3, 64, 64)
    out = {"onnx": folder / "tiny.onnx", "pnet_onnx": folder / "pnet.onnx", "pt2": folder / "tiny.pt2",
           "weights": folder / "tiny.pt"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(resnet, (x,), str(out["onnx"]), dynamo=False, input_names=["input"])
        torch.onnx.export(pnet, (x,), str(out["pnet_onnx"]), dynamo=False, input_names=["input"],
                          dynamic_axes={"input": {2: "h", 3: "w"}})
        torch.export.save(torch.export.export(resnet, (x,)), str(out["pt2"]))
    torch.save(resnet.state_dict(), out["weights"])
    return out
