"""Running one parsed stage on a real tensor with torch's own ops.

Every op maps onto the torch function a network would use (``F.conv2d``, ``F.max_pool2d``,
``F.avg_pool2d``, ``F.adaptive_*``...), so featcli's numbers are exactly torch's. Layers with learned
parameters and no ``w=`` (random conv, convt, linear) are torch's own modules, initialised from the
run's --seed, as the tutorials' ``nn.Conv2d(3, 5, (3, 5), (1, 2), 2)`` is.

Inference semantics: ``dropout`` is the identity (as in ``model.eval()``); ``bn`` standardises each
channel of each image with its own statistics (``BatchNorm2d`` in training mode on a batch of one,
affine weight 1 and bias 0), which makes it visible on a single image and independent of batching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from featcli.enums import PaddingMode
from featcli.errors import StageError
from featcli.shape.axis import conv_padding
from featcli.stages import params as spec
from featcli.stages.grammar import SOLVE, Padding
from featcli.stages.registry import Op
from featcli.stages.spec import Stage

#: ITU-R 601-2 luma weights, the same as Pillow's ``convert("L")`` (used by ``mode=gray`` kernels).
LUMA = (0.299, 0.587, 0.114)


@dataclass
class OpContext:
    """What the ops need besides the tensor: device, seed, kernel lookup, trust flags."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    kernels_dir: str | None = None
    allow_torchscript: bool = False
    random_layers: int = 0  #: random layers made so far; the i-th is seeded with ``seed + i``
    channel_names: list[str] | None = None  #: labels of the current tensor's channels (depthwise names)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W): ITU-R 601-2 luma for C = 3 (or 4, alpha ignored), mean otherwise."""
    c = x.shape[1]
    if c == 1:
        return x
    if c in (3, 4):
        w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x[:, :3] * w).sum(dim=1, keepdim=True)
    return x.mean(dim=1, keepdim=True)


def magnitude(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W): ``sqrt(sum_c x_c^2)``, the Sobel X/Y edge image for C = 2.

    Reducing over channels is fast when they are the innermost dimension (channels_last) and slow
    otherwise, so NCHW tensors take the square-sum-sqrt route instead (same values to float rounding).
    """
    if x.is_contiguous(memory_format=torch.channels_last) and x.shape[1] > 1:
        out: torch.Tensor = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        return out
    return x.square().sum(dim=1, keepdim=True).sqrt_()


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
    groups: int,
    padding_mode: PaddingMode,
) -> torch.Tensor:
    """``Conv2d.forward`` as torch writes it: non-zero padding modes pad first, then convolve."""
    if padding == SOLVE:  # pragma: no cover - the CLI solves `p=?` before running
        raise StageError("p=? must be solved before running")
    if padding_mode is PaddingMode.ZEROS:
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    top, bottom, left, right = conv_padding(padding, (weight.shape[2], weight.shape[3]), dilation)
    x = F.pad(x, (left, right, top, bottom), mode=padding_mode.value)
    return F.conv2d(x, weight, bias, stride, 0, dilation, groups)


def _seeded(ctx: OpContext, make: Callable[[], nn.Module]) -> nn.Module:
    """Build a layer with torch's default init under a seed, without touching the global RNG.

    The first random layer of a run gets exactly the weights of ``torch.manual_seed(seed); make()``,
    so ``--seed 0`` reproduces a tutorial's ``torch.manual_seed(0); nn.Conv2d(...)``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed + ctx.random_layers)
        module = make()
    ctx.random_layers += 1
    return module.to(ctx.device).eval()


def apply_stage(x: torch.Tensor, stage: Stage, ctx: OpContext) -> tuple[torch.Tensor, list[str] | None]:
    """Run ``stage`` on ``x`` (N, C, H, W) and return the output and, when known, one label per channel.

    Raises:
        StageError: the stage cannot run on this tensor (torch refused it, or a weight does not fit).
    """
    p = stage.params
    if stage.op is Op.CONV:
        assert isinstance(p, spec.ConvSpec)
        return _conv(x, p, ctx)
    if stage.op is Op.CONVT:
        assert isinstance(p, spec.ConvTSpec)
        if not isinstance(p.p, tuple) or not isinstance(p.op, tuple):
            raise StageError("p=?/op=? must be solved before running")
        c_in, c_out, pad, out_pad = x.shape[1], p.out or x.shape[1], p.p, p.op
        m = _seeded(ctx, lambda: nn.ConvTranspose2d(c_in, c_out, p.k, p.s, pad, out_pad, p.g, p.bias, p.d))
        return m(x), None
    if stage.op in (Op.MAXPOOL, Op.AVGPOOL):
        assert isinstance(p, spec.PoolSpec)
        if p.p == SOLVE:
            raise StageError("p=? must be solved before running")
        if p.kind == "max":
            return F.max_pool2d(x, p.k, p.stride, p.p, p.d, ceil_mode=p.ceil), None
        return F.avg_pool2d(x, p.k, p.stride, p.p, ceil_mode=p.ceil, count_include_pad=p.cip), None
    if stage.op in (Op.GAP, Op.GMP, Op.ADAPTIVEAVG, Op.ADAPTIVEMAX):
        assert isinstance(p, spec.AdaptivePoolSpec)
        fn = F.adaptive_avg_pool2d if p.kind == "avg" else F.adaptive_max_pool2d
        return fn(x, p.o), None
    if stage.op is Op.RELU:
        return F.relu(x), None
    if stage.op is Op.SIGMOID:
        return torch.sigmoid(x), None
    if stage.op is Op.TANH:
        return torch.tanh(x), None
    if stage.op is Op.ABS:
        return x.abs(), None
    if stage.op is Op.DROPOUT:
        return x, None
    if stage.op is Op.BN:
        assert isinstance(p, spec.BatchNormSpec)
        return F.instance_norm(x, eps=p.eps), None
    if stage.op is Op.MAGNITUDE:
        return magnitude(x), ["magnitude"]
    if stage.op is Op.FLATTEN:
        return x.flatten(1), None
    if stage.op is Op.LINEAR:
        assert isinstance(p, spec.LinearSpec)
        n_in = x.shape[-1]
        return _seeded(ctx, lambda: nn.Linear(n_in, p.out, p.bias))(x), None
    raise StageError(f"op {stage.op.value!r} cannot run")  # pragma: no cover - every Op is handled above


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """What one conv stage convolves with: weight (out, in/groups, kh, kw), bias, groups, labels."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    groups: int
    gray: bool  #: convert the input to luminance first
    labels: list[str] | None


def conv_layer(in_channels: int, p: spec.ConvSpec, ctx: OpContext, *, dtype: torch.dtype = torch.float32
               ) -> ConvLayer:
    """Build the weights of a conv stage for an input of ``in_channels`` (kernels, learned or seeded)."""
    if p.p == SOLVE:
        raise StageError("p=? must be solved before running")
    if p.w:
        from featcli.kernels import conv_weight

        names = ctx.channel_names if ctx.channel_names and len(ctx.channel_names) == in_channels else None
        cw = conv_weight(p.w, in_channels, p.mode, kernels_dir=ctx.kernels_dir,
                         allow_torchscript=ctx.allow_torchscript, channel_labels=names)
        weight = cw.weight.to(device=ctx.device, dtype=dtype)
        bias = cw.bias.to(device=ctx.device, dtype=dtype) if cw.bias is not None else None
        if bias is None and p.bias:
            bias = torch.zeros(weight.shape[0], dtype=dtype, device=ctx.device)
        return ConvLayer(weight, bias, cw.groups, cw.gray, list(cw.labels))
    assert p.k is not None
    c_out, k = p.out or in_channels, p.k
    m = _seeded(ctx, lambda: nn.Conv2d(in_channels, c_out, k, p.s, p.p, p.d, p.g, p.bias,
                                       padding_mode=p.pm.value))
    assert isinstance(m, nn.Conv2d)
    bias = m.bias.detach().to(dtype) if m.bias is not None else None
    return ConvLayer(m.weight.detach().to(dtype), bias, p.g, False, None)


def _conv(x: torch.Tensor, p: spec.ConvSpec, ctx: OpContext) -> tuple[torch.Tensor, list[str] | None]:
    layer = conv_layer(x.shape[1], p, ctx, dtype=x.dtype)
    if layer.gray:
        x = luminance(x)
    out = conv2d(x, layer.weight, layer.bias, stride=p.s, padding=p.p, dilation=p.d, groups=layer.groups,
                 padding_mode=p.pm)
    return out, layer.labels
