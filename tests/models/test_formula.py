"""Layers as stages: the formula engine's prediction for a real layer equals the layer's real output shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from featcli.models.formula import predict, spec_text
from featcli.models.torch_route import module_op

LAYERS = [
    (nn.Conv2d(3, 6, (3, 5), stride=(1, 2), padding=2, dilation=2, bias=False), (1, 3, 33, 40)),
    (nn.Conv2d(4, 8, 3, groups=2, padding="same", padding_mode="reflect"), (1, 4, 17, 19)),
    (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1), (1, 4, 9, 11)),
    (nn.MaxPool2d(3, 2, 1, ceil_mode=True), (1, 2, 16, 17)),
    (nn.MaxPool2d(2, dilation=2), (1, 2, 16, 17)),
    (nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 2, 15, 16)),
    (nn.AdaptiveAvgPool2d((3, 2)), (1, 2, 15, 16)),
    (nn.AdaptiveMaxPool2d(1), (1, 2, 15, 16)),
    (nn.Linear(12, 5), (2, 12)),
    (nn.Flatten(), (1, 3, 4, 5)),
    (nn.BatchNorm2d(3).eval(), (1, 3, 4, 5)),
    (nn.LeakyReLU(0.2), (1, 3, 4, 5)),
    (nn.PReLU(3), (1, 3, 4, 5)),
    (nn.Softmax(dim=1), (1, 3, 4, 5)),
    (nn.Dropout(0.3), (1, 3, 4, 5)),
    (nn.Sigmoid(), (1, 3, 4, 5)),
]


@pytest.mark.parametrize(("layer", "shape"), LAYERS, ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "")
def test_prediction_equals_the_real_layer(layer: nn.Module, shape: tuple[int, ...]) -> None:
    op = module_op(layer, shape)
    assert op is not None
    got = predict(spec_text(op), shape)
    with torch.no_grad():
        real = tuple(layer(torch.rand(shape)).shape)
    assert got.shape == real, spec_text(op)


def test_specs_read_as_the_stage_language() -> None:
    op = module_op(nn.Conv2d(3, 64, 7, 2, 3, bias=False), (1, 3, 224, 224))
    assert op is not None and spec_text(op) == "conv:out=64,k=7,s=2,p=3,bias=0"
    pool = module_op(nn.MaxPool2d(3, 2, 1), (1, 64, 112, 112))
    assert pool is not None and spec_text(pool) == "maxpool:k=3,s=2,p=1"


def test_layers_the_stage_language_cannot_express() -> None:
    assert module_op(nn.Upsample(scale_factor=2, mode="bicubic"), (1, 3, 4, 4)) is None
    assert module_op(nn.MaxPool2d(2, return_indices=True), (1, 3, 4, 4)) is None
    assert module_op(nn.Softmax(dim=-1), (1, 3, 4, 4)) is None
