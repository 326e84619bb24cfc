"""The torch backend: every op is the torch function a network would use, so numbers are exactly torch's.

``F.conv2d``, ``F.max_pool2d``, ``F.avg_pool2d``, ``F.adaptive_*``... Layers with learned parameters and
no weights file (random conv, convt, linear) are torch's own modules, initialised from the plan's
seed for that layer, as the tutorials' ``torch.manual_seed(0); nn.Conv2d(3, 5, (3, 5), (1, 2), 2)`` is.

Inference semantics: ``dropout`` is the identity (as in ``model.eval()``); ``bn`` standardises each
channel of each image with its own statistics (``BatchNorm2d`` in training mode on a batch of one,
affine weight 1 and bias 0), which makes it visible on a single image and independent of batching.
A trained network's ``bn`` (a plan with the model file's tensors) uses its running statistics instead, as
``BatchNorm2d`` in eval mode does. :func:`stage_module` is the one place each learnable op's module is built.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from featcli.engine import reduce
from featcli.engine.backend import OpTable, SampleStats, StageFn
from featcli.engine.plan import PlannedStage
from featcli.enums import PaddingMode
from featcli.errors import WeightsError
from featcli.stages import params as P
from featcli.stages.modules import module_call
from featcli.stages.registry import Op

#: ITU-R 601-2 luma weights, the same as Pillow's ``convert("L")`` (used by ``mode=gray`` kernels).
LUMA = (0.299, 0.587, 0.114)

OPS: OpTable[TorchEnv] = OpTable("torch")


@dataclass
class TorchEnv:
    """Where compiled stages run: the device and the dtype of weights."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32


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


def seeded(seed: int, make: Callable[[], nn.Module]) -> nn.Module:
    """Build a layer with torch's default init under ``seed``, without touching the global RNG.

    The first random layer of a run gets exactly the weights of ``torch.manual_seed(seed); make()``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = make()
    return module.eval()


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """What one conv stage convolves with: weight (out, in/groups, kh, kw), bias, groups, gray input."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    groups: int
    gray: bool


def conv_layer(stage: PlannedStage, env: TorchEnv) -> ConvLayer:
    """The weights of a planned conv stage as tensors on ``env.device`` (kernels, learned or seeded)."""
    p = stage.params
    assert isinstance(p, P.ConvSpec)
    ck = stage.kernels
    c_in = stage.row.in_shape[1]
    dev, dtype = env.device, env.dtype
    if ck is not None:
        from featcli.kernels import weight_of

        cw = weight_of(ck.learned if ck.learned is not None else ck.kernels, c_in, ck.mode, dtype=dtype)
        weight, bias = cw.weight, cw.bias
        weight = weight.to(device=dev, dtype=dtype)
        bias = bias.to(device=dev, dtype=dtype) if bias is not None else None
        if bias is None and p.bias:
            bias = torch.zeros(weight.shape[0], dtype=dtype, device=dev)
        return ConvLayer(weight, bias, cw.groups, cw.gray)
    m = stage_module(stage, env)
    conv = m[-1] if isinstance(m, nn.Sequential) else m
    assert isinstance(conv, nn.Conv2d)
    bias = conv.bias.detach() if conv.bias is not None else None
    return ConvLayer(conv.weight.detach(), bias, p.groups, False)


def _new_module(stage: PlannedStage) -> nn.Module | None:
    """The module of ``stage`` with torch's own init (the plan's seed for random layers), built from the
    registry's description as ``featcli shape --code`` writes it (:func:`featcli.stages.modules.module_call`):
    an uneven conv padding is a padding module before the conv (``s1.1.weight``)."""
    d = stage.definition
    if not (d.trained or d.train_mode) or stage.kernels is not None or stage.slopes_ref is not None:
        return None
    call = module_call(d, stage.row.config, stage.row.in_shape[1])
    assert call is not None

    def make() -> nn.Module:
        module: nn.Module = getattr(nn, call.cls)(*call.args, **dict(call.kwargs))
        return module if call.pad is None else nn.Sequential(getattr(nn, call.pad[0])(call.pad[1]), module)

    if stage.seed is None:  # bn, dropout, prelu: a constant init, no random numbers
        return make().eval()
    with warnings.catch_warnings():  # no input features (after an empty map): torch warns that init is a no-op
        warnings.simplefilter("ignore", UserWarning)
        return seeded(stage.seed, make)  # the init draws the same numbers whatever the padding is


def stage_module(stage: PlannedStage, env: TorchEnv | None = None) -> nn.Module | None:
    """The torch module of a stage with learned parameters, or of ``bn`` and ``dropout`` (None for the others,
    and for ``conv:w=`` / ``prelu:w=`` whose weights are read, not learned), on ``env``'s device, in eval mode.

    Initialised as torch initialises it, from the plan's seed; with the stage's trained tensors
    (``stage.state``) loaded when the plan has them. The one home of each learnable op's module: the
    compilers below and the trainable :class:`featcli.engine.network.Network` both build theirs here.

    Raises:
        WeightsError: the trained tensors are missing or do not fit the stage.
    """
    env = env or TorchEnv()
    m = _new_module(stage)
    if m is None:
        return None
    if stage.state is not None:
        try:
            m.load_state_dict({k: torch.as_tensor(v) for k, v in stage.state.items()})
        except RuntimeError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
            raise WeightsError(f"{stage.label()}: the trained tensors do not fit: "
                               f"{lines[0] if lines else exc}") from None
    return m.to(env.device, env.dtype)


def conv_fn(layer: ConvLayer, p: P.ConvSpec, padding: tuple[int, int, int, int]) -> StageFn:
    """``Conv2d.forward`` as torch writes it: zeros padding inside the conv when symmetric, else pad first."""
    top, bottom, left, right = padding
    stride, dilation, groups = p.stride, p.dilation, layer.groups
    weight, bias, gray = layer.weight, layer.bias, layer.gray
    if p.padding_mode is PaddingMode.ZEROS and top == bottom and left == right:
        def run(x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(luminance(x) if gray else x, weight, bias, stride, (top, left), dilation, groups)
    else:
        mode = "constant" if p.padding_mode is PaddingMode.ZEROS else p.padding_mode.value

        def run(x: torch.Tensor) -> torch.Tensor:
            x = F.pad(luminance(x) if gray else x, (left, right, top, bottom), mode=mode)
            return F.conv2d(x, weight, bias, stride, 0, dilation, groups)
    return run


@OPS.implements(Op.CONV)
def _conv(stage: PlannedStage, env: TorchEnv) -> StageFn:
    assert stage.padding is not None
    return conv_fn(conv_layer(stage, env), stage.params, stage.padding)


@OPS.implements(Op.CONVT)
def _convt(stage: PlannedStage, env: TorchEnv) -> StageFn:
    p = stage.params
    assert isinstance(p, P.ConvTSpec) and isinstance(p.padding, tuple) and isinstance(p.output_padding, tuple)
    c_out = p.out or stage.row.in_shape[1]
    oh, ow = stage.row.out_shape[2:]
    if oh == 0 or ow == 0:
        # An empty output, as torch's oneDNN path returns it; its reference path (a batch of one) would refuse.
        return lambda x: x.new_empty((x.shape[0], c_out, oh, ow))
    return _module_fn(stage, env)


def module_fn(stage: PlannedStage, m: nn.Module) -> StageFn:
    """How ``stage`` applies its module (``OpDef.call``): ``m(x)``, or ``layernorm``'s ``LayerNorm(C)`` on the
    channels-last permutation, back to ``(N, C, H, W)`` after it."""
    if stage.op is Op.LAYERNORM:
        return lambda x: m(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    return m


def _module_fn(stage: PlannedStage, env: TorchEnv) -> StageFn:
    m = stage_module(stage, env)
    assert m is not None
    return module_fn(stage, m)


@OPS.implements(Op.GROUPNORM, Op.LAYERNORM, Op.LINEAR)
def _with_module(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return _module_fn(stage, env)


@OPS.implements(Op.UPSAMPLE, Op.GELU, Op.SILU, Op.HARDSWISH, Op.HARDSIGMOID, Op.RELU6)
def _plain_module(stage: PlannedStage, env: TorchEnv) -> StageFn:
    """The registry's module, which holds no tensors (``featcli shape --code`` writes the same call)."""
    call = module_call(stage.definition, stage.row.config, stage.row.in_shape[1])
    assert call is not None and call.pad is None
    module: StageFn = getattr(nn, call.cls)(*call.args, **dict(call.kwargs))
    return module


@OPS.implements(Op.MAXPOOL, Op.AVGPOOL)
def _pool(stage: PlannedStage, env: TorchEnv) -> StageFn:
    p = stage.params
    assert isinstance(p, P.PoolSpec) and isinstance(p.padding, tuple)
    pad = p.padding
    if p.kind == "max":
        return lambda x: F.max_pool2d(x, p.kernel_size, p.stride, pad, p.dilation, ceil_mode=p.ceil_mode)
    return lambda x: F.avg_pool2d(x, p.kernel_size, p.stride, pad, ceil_mode=p.ceil_mode,
                                  count_include_pad=p.count_include_pad)


@OPS.implements(Op.GAP, Op.GMP, Op.ADAPTIVEAVG, Op.ADAPTIVEMAX)
def _adaptive(stage: PlannedStage, env: TorchEnv) -> StageFn:
    p = stage.params
    assert isinstance(p, P.AdaptivePoolSpec)
    fn: Any = F.adaptive_avg_pool2d if p.kind == "avg" else F.adaptive_max_pool2d
    return lambda x: fn(x, p.output_size)


@OPS.implements(Op.RELU)
def _relu(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return F.relu


@OPS.implements(Op.LEAKYRELU)
def _leakyrelu(stage: PlannedStage, env: TorchEnv) -> StageFn:
    slope = stage.params.negative_slope
    return lambda x: F.leaky_relu(x, slope)


@OPS.implements(Op.PRELU)
def _prelu(stage: PlannedStage, env: TorchEnv) -> StageFn:
    p = stage.params
    assert isinstance(p, P.PReLUSpec)
    if stage.slopes_ref is not None:
        from featcli.kernels import load_vector

        weight = load_vector(stage.slopes_ref).to(env.device, env.dtype)
    else:  # torch's init (every slope starts at `init`), or the trained slopes
        m = stage_module(stage, env)
        assert isinstance(m, nn.PReLU)
        weight = m.weight.detach()
    return lambda x: F.prelu(x, weight)


@OPS.implements(Op.SIGMOID)
def _sigmoid(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return torch.sigmoid


@OPS.implements(Op.TANH)
def _tanh(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return torch.tanh


@OPS.implements(Op.SOFTMAX)
def _softmax(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return lambda x: torch.softmax(x, dim=1)


@OPS.implements(Op.ABS)
def _abs(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return torch.abs


@OPS.implements(Op.DROPOUT)
def _dropout(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return lambda x: x


@OPS.implements(Op.BN)
def _bn(stage: PlannedStage, env: TorchEnv) -> StageFn:
    if stage.state is not None:  # a trained network: its running statistics, as in eval mode
        return _module_fn(stage, env)
    eps = stage.params.eps
    return lambda x: F.instance_norm(x, eps=eps)


@OPS.implements(Op.MAGNITUDE)
def _magnitude(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return magnitude


@OPS.implements(Op.FLATTEN)
def _flatten(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return lambda x: x.flatten(1)


@OPS.implements(Op.SAVE)
def _save(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return lambda x: x  # the loop keeps the tensor under its name


# add, mul and cat take the loop's second operand: (the current tensor or the one a side branch set aside, other)
@OPS.implements(Op.ADD)
def _add(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return lambda x, other: x + other


@OPS.implements(Op.MUL)
def _mul(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return lambda x, other: x * other


@OPS.implements(Op.CAT)
def _cat(stage: PlannedStage, env: TorchEnv) -> StageFn:
    return lambda x, other: torch.cat((x, other), 1)


class TorchBackend:
    """Runs planned stages with torch on one device (see the module docstring)."""

    name = "torch"
    ops = OPS

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.env = TorchEnv(torch.device(device))

    def compile(self, stage: PlannedStage) -> StageFn:
        return self.ops.compile(stage, self.env)

    def context(self) -> Any:
        return torch.inference_mode()

    def sync(self) -> None:
        if self.env.device.type == "cuda":
            torch.cuda.synchronize(self.env.device)

    @staticmethod
    def shape(y: torch.Tensor) -> tuple[int, ...]:
        return tuple(int(d) for d in y.shape)

    @staticmethod
    def sample(y: torch.Tensor, i: int) -> torch.Tensor:
        return y[i : i + 1]

    @staticmethod
    def empty(shape: Sequence[int]) -> torch.Tensor:
        return torch.empty(tuple(shape))

    @staticmethod
    def stats(y: torch.Tensor, ranges: bool = False, extremes: bool = True) -> list[SampleStats]:
        """Per-sample statistics, each sample in whatever layout it has.

        Reductions over a whole sample are :mod:`featcli.engine.reduce`'s (one contiguous run of values each);
        the ``dim=``-tuple forms on a channels-last batch are several times slower, hence the loop.
        ``extremes=False``: the caller knows them (lo and hi are NaN here).
        """
        out = []
        for i in range(y.shape[0]):
            s = y[i]
            per_map = None
            lo = hi = float("nan")
            if ranges and s.dim() == 3:  # per-map extremes first; the sample's follow from them
                lo_c, hi_c = s.amin(dim=(1, 2)), s.amax(dim=(1, 2))
                per_map = list(zip(lo_c.tolist(), hi_c.tolist(), strict=True))
                lo, hi = float(lo_c.min()), float(hi_c.max())
            elif extremes:
                lo, hi = reduce.extremes(s)
            total, zeros = reduce.sum_zeros(s)
            out.append(SampleStats(lo, hi, total, s.numel(), zeros, per_map))
        return out
