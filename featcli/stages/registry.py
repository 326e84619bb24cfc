"""The registry: one :class:`OpDef` per stage operation, the only place an operation is defined.

An :class:`OpDef` says what the stage language accepts (name, aliases, keys and their aliases, the parameter
class that parses them), how the shape engine treats it (``shape_rule``: a rule of
:mod:`featcli.shape.rules`), what it does to channel labels (``channelwise``), whether it may follow a
streamed conv band by band (``pointwise``: each output value depends only on input values at the same
position), whether it holds parameters a run makes or reads (``learnable``), what its torch module stores and
does (``trained``, ``train_mode``), whether its ``p`` is a padding (``padded``), and the torch module it equals
(``torch`` and its constructor arguments ``torch_args``, :mod:`featcli.stages.modules`; or ``code``, the
expression of an op that is no module). The ``shape`` help text, ``featcli shape --code``, the torch backend's
modules, each backend's capability table and the tests' torch oracle are all derived from here; a test checks
that every backend implements every op or declares it unsupported.

Adding an op: an :class:`Op` member and an :class:`OpDef` here (with a parameter class in
:mod:`featcli.stages.params` if it takes keys), then one function per backend
(``featcli/engine/*_backend.py``). ``docs/DESIGN.md`` walks through it.

Pure stdlib.

>>> REGISTRY[Op.MAXPOOL].keys
('k', 's', 'p', 'd', 'ceil')
>>> lookup("MaxPool2d").op
<Op.MAXPOOL: 'maxpool'>
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from featcli.stages.modules import IN_CHANNELS, TorchArg, kw, pos
from featcli.stages.params import (
    AdaptivePoolSpec,
    BatchNormSpec,
    BranchSpec,
    ConvSpec,
    ConvTSpec,
    DropoutSpec,
    GeluSpec,
    GroupNormSpec,
    Items,
    LayerNormSpec,
    LeakyReLUSpec,
    LinearSpec,
    NoParams,
    Params,
    PoolSpec,
    PReLUSpec,
    UpsampleSpec,
)


class Op(str, enum.Enum):
    """Canonical stage operations, in documentation order."""

    def __str__(self) -> str:
        return str(self.value)

    CONV = "conv"
    CONVT = "convt"
    MAXPOOL = "maxpool"
    AVGPOOL = "avgpool"
    GAP = "gap"
    GMP = "gmp"
    ADAPTIVEAVG = "adaptiveavg"
    ADAPTIVEMAX = "adaptivemax"
    UPSAMPLE = "upsample"
    RELU = "relu"
    RELU6 = "relu6"
    LEAKYRELU = "leakyrelu"
    PRELU = "prelu"
    SIGMOID = "sigmoid"
    TANH = "tanh"
    GELU = "gelu"
    SILU = "silu"
    HARDSWISH = "hardswish"
    HARDSIGMOID = "hardsigmoid"
    SOFTMAX = "softmax"
    ABS = "abs"
    BN = "bn"
    GROUPNORM = "groupnorm"
    LAYERNORM = "layernorm"
    DROPOUT = "dropout"
    MAGNITUDE = "magnitude"
    FLATTEN = "flatten"
    LINEAR = "linear"
    SAVE = "save"
    ADD = "add"
    MUL = "mul"
    CAT = "cat"


#: Key aliases every op shares (torch's long argument names); an OpDef may add or override its own.
COMMON_KEY_ALIASES: Mapping[str, str] = MappingProxyType({
    "out_channels": "out", "out_features": "out", "c": "out",
    "kernel": "k", "kernel_size": "k", "ks": "k",
    "stride": "s",
    "padding": "p", "pad": "p",
    "dilation": "d",
    "groups": "g",
    "padding_mode": "pm",
    "weights": "w", "kernels": "w", "weight": "w",
    "output_padding": "op",
    "ceil_mode": "ceil",
    "count_include_pad": "cip",
    "output_size": "o", "output": "o", "size": "o",
})


@dataclass(frozen=True)
class OpDef:
    """Everything featcli knows about one operation, apart from each backend's one function."""

    op: Op
    summary: str  #: one line for help texts
    parse: Callable[[Items], Params]  #: canonical items -> the parameter dataclass
    shape_rule: str = "same"  #: name of the rule in featcli.shape.rules
    keys: tuple[str, ...] = ()  #: canonical keys, in documentation order
    aliases: tuple[str, ...] = ()  #: other op names (compared without '-', '_' and case)
    key_aliases: Mapping[str, str] = field(default_factory=dict)  #: this op's own key aliases
    channelwise: bool = False  #: output channel i is input channel i transformed (labels carry through)
    pointwise: bool = False  #: an output value depends only on the input values at its position
    learnable: bool = False  #: holds parameters that a run initialises from --seed or reads from a file
    #: its module's ``state_dict`` holds tensors a trained network stores (a model file's ``s{index}.*``)
    trained: bool = False
    train_mode: bool = False  #: its module computes differently in ``train()`` mode (batch statistics, drops)
    padded: bool = False  #: its ``p`` is a padding (the plan carries it as ``(top, bottom, left, right)``)
    torch: str = ""  #: the torch module (``nn.Conv2d``) or function it equals (the tests' oracle builds it)
    #: the constructor arguments of its ``nn`` module, read from its shape row (:mod:`featcli.stages.modules`)
    torch_args: tuple[TorchArg, ...] = ()
    #: what ``featcli shape --code`` writes in ``forward`` for an op that is no ``nn`` module (``{x}``: the
    #: tensor, ``{other}``: the saved one)
    code: str = ""
    #: how ``forward`` applies the module where it is not ``{m}({x})`` (``{m}``: the module, ``{x}``: the tensor)
    call: str = ""
    example: str = ""  #: a spec to show in help texts
    #: the body is ``NAME`` (``save``) or ``NAME`` and an optional side branch ``NAME(STAGE ...)`` (``add``,
    #: ``cat``), not ``key=value`` items; :mod:`featcli.stages.spec` parses it into a ``BranchSpec``
    named: bool = False

    @property
    def name(self) -> str:
        return self.op.value

    def canonical_key(self, key: str) -> str:
        return self.key_aliases.get(key) or COMMON_KEY_ALIASES.get(key, key)


def _pool(kind: str) -> Callable[[Items], Params]:
    return lambda items: PoolSpec.parse(kind, items)  # type: ignore[arg-type]


def _adaptive(kind: str, op: str, fixed: bool) -> Callable[[Items], Params]:
    if fixed:
        return lambda items: AdaptivePoolSpec(kind=kind)  # type: ignore[arg-type]
    return lambda items: AdaptivePoolSpec.parse(kind, op, items)  # type: ignore[arg-type]


def _branch(items: Items) -> Params:
    return BranchSpec(name=items["name"])


# torch's constructor arguments, in its signature order (names as torch spells them)
_IN_OUT_K = (pos("in_channels", "in"), pos("out_channels", "out"), pos("kernel_size", "k"), kw("stride", "s", 1))
_CONV = (*_IN_OUT_K, kw("padding", "p", 0), kw("dilation", "d", 1), kw("groups", "g", 1), kw("bias", "bias", True),
         kw("padding_mode", "pm", "zeros", needs="padding"))
_CONVT = (*_IN_OUT_K, kw("padding", "p", 0), kw("output_padding", "op", 0), kw("groups", "g", 1),
          kw("bias", "bias", True), kw("dilation", "d", 1))
_POOL = (pos("kernel_size", "k"), kw("stride", "s", None, always=True), kw("padding", "p", 0))
_MAXPOOL = (*_POOL, kw("dilation", "d", 1), kw("ceil_mode", "ceil", False))
_AVGPOOL = (*_POOL, kw("ceil_mode", "ceil", False), kw("count_include_pad", "cip", True))
_ADAPTIVE = (pos("output_size", "o"),)
_UPSAMPLE = (kw("size", "o", None), kw("scale_factor", "sf", None), kw("mode", "mode", "nearest"),
             kw("align_corners", "ac", None), kw("recompute_scale_factor", "rsf", None))
_EPS = kw("eps", "eps", 1e-5, always=True)


_DEFS = (
    OpDef(Op.CONV, "2-D convolution (cross-correlation): kernels from w=, or out= random/learned ones",
          ConvSpec.from_items, "conv", ("out", "k", "s", "p", "d", "g", "bias", "pm", "w", "mode"),
          ("conv2d",), learnable=True, trained=True, padded=True, torch="nn.Conv2d", torch_args=_CONV,
          example="conv:out=8,k=3,p=1"),
    OpDef(Op.CONVT, "transposed convolution (learned upsampling)", ConvTSpec.from_items, "convt",
          ("out", "k", "s", "p", "op", "d", "g", "bias"), ("convtranspose", "convtranspose2d", "deconv"),
          learnable=True, trained=True, padded=True, torch="nn.ConvTranspose2d", torch_args=_CONVT,
          example="convt:out=8,k=2,s=2"),
    OpDef(Op.MAXPOOL, "max pooling", _pool("max"), "pool", ("k", "s", "p", "d", "ceil"), ("maxpool2d", "max"),
          padded=True, torch="nn.MaxPool2d", torch_args=_MAXPOOL, example="maxpool:k=2", channelwise=True),
    OpDef(Op.AVGPOOL, "average pooling", _pool("avg"), "pool", ("k", "s", "p", "ceil", "cip"),
          ("avgpool2d", "avg"), padded=True, torch="nn.AvgPool2d", torch_args=_AVGPOOL, example="avgpool:k=3,s=2",
          channelwise=True),
    OpDef(Op.GAP, "global average pooling (1x1 output)", _adaptive("avg", "gap", True), "adaptive",
          aliases=("globalavg",), torch="nn.AdaptiveAvgPool2d", torch_args=_ADAPTIVE, example="gap",
          channelwise=True),
    OpDef(Op.GMP, "global max pooling (1x1 output)", _adaptive("max", "gmp", True), "adaptive",
          aliases=("globalmax",), torch="nn.AdaptiveMaxPool2d", torch_args=_ADAPTIVE, example="gmp",
          channelwise=True),
    OpDef(Op.ADAPTIVEAVG, "adaptive average pooling to o=HxW", _adaptive("avg", "adaptiveavg", False),
          "adaptive", ("o",), ("adaptiveavgpool2d",), torch="nn.AdaptiveAvgPool2d", torch_args=_ADAPTIVE,
          example="adaptiveavg:o=7x7", channelwise=True),
    OpDef(Op.ADAPTIVEMAX, "adaptive max pooling to o=HxW", _adaptive("max", "adaptivemax", False),
          "adaptive", ("o",), ("adaptivemaxpool2d",), torch="nn.AdaptiveMaxPool2d", torch_args=_ADAPTIVE,
          example="adaptivemax:o=7x7", channelwise=True),
    OpDef(Op.UPSAMPLE, "resize by sf= (floor(H*sf)) or to o=HxW, mode=nearest|bilinear (ac= align_corners, rsf= "
          "recompute_scale_factor)", UpsampleSpec.from_items, "upsample", ("sf", "o", "mode", "ac", "rsf"),
          ("interpolate", "resize"), key_aliases={"scale_factor": "sf", "scale": "sf", "align_corners": "ac",
                                                 "recompute_scale_factor": "rsf"},
          channelwise=True, torch="nn.Upsample", torch_args=_UPSAMPLE, example="upsample:sf=2,mode=bilinear"),
    OpDef(Op.RELU, "max(x, 0)", NoParams.from_items, channelwise=True, pointwise=True, torch="nn.ReLU",
          example="relu"),
    OpDef(Op.RELU6, "min(max(x, 0), 6) (MobileNet's activation)", NoParams.from_items, channelwise=True,
          pointwise=True, torch="nn.ReLU6", example="relu6"),
    OpDef(Op.LEAKYRELU, "x, or slope*x below zero (slope=0.01)", LeakyReLUSpec.from_items, keys=("slope",),
          aliases=("lrelu",), key_aliases={"negative_slope": "slope", "alpha": "slope"}, channelwise=True,
          pointwise=True, torch="nn.LeakyReLU", torch_args=(pos("negative_slope", "slope"),),
          example="leakyrelu:slope=0.2"),
    OpDef(Op.PRELU, "x, or a learned per-channel slope times x below zero (w=FILE:KEY)", PReLUSpec.from_items,
          "prelu", ("w", "n", "init"), key_aliases={"num_parameters": "n"}, channelwise=True, pointwise=True,
          learnable=True, trained=True, torch="nn.PReLU",
          torch_args=(pos("num_parameters", "n"), kw("init", "init", 0.25, always=True)),
          example="prelu:w=model.pt:prelu1.weight"),
    OpDef(Op.SIGMOID, "1 / (1 + exp(-x))", NoParams.from_items, channelwise=True, pointwise=True,
          torch="nn.Sigmoid", example="sigmoid"),
    OpDef(Op.TANH, "tanh(x)", NoParams.from_items, channelwise=True, pointwise=True, torch="nn.Tanh",
          example="tanh"),
    OpDef(Op.GELU, "x * Phi(x) (approx=none: erf; approx=tanh: its tanh form)", GeluSpec.from_items,
          keys=("approx",), key_aliases={"approximate": "approx"}, channelwise=True, pointwise=True,
          torch="nn.GELU", torch_args=(kw("approximate", "approx", "none"),), example="gelu"),
    OpDef(Op.SILU, "x * sigmoid(x) (swish)", NoParams.from_items, aliases=("swish",), channelwise=True,
          pointwise=True, torch="nn.SiLU", example="silu"),
    OpDef(Op.HARDSWISH, "x * relu6(x + 3) / 6", NoParams.from_items, channelwise=True, pointwise=True,
          torch="nn.Hardswish", example="hardswish"),
    OpDef(Op.HARDSIGMOID, "relu6(x + 3) / 6", NoParams.from_items, channelwise=True, pointwise=True,
          torch="nn.Hardsigmoid", example="hardsigmoid"),
    OpDef(Op.SOFTMAX, "softmax over the channels at each position (class probabilities)", NoParams.from_items,
          channelwise=True, pointwise=True, torch="nn.Softmax", torch_args=(kw("dim", "", 1, always=True),),
          example="softmax"),
    OpDef(Op.ABS, "|x|", NoParams.from_items, channelwise=True, pointwise=True, torch="torch.abs",
          code="torch.abs({x})", example="abs"),
    OpDef(Op.BN, "batch norm (run: each image standardised by its own statistics)", BatchNormSpec.from_items,
          "bn", ("eps",), ("batchnorm", "batchnorm2d"), channelwise=True, trained=True, train_mode=True,
          torch="nn.BatchNorm2d", torch_args=(pos("num_features", IN_CHANNELS), kw("eps", "eps", 1e-5, always=True)),
          example="bn"),
    OpDef(Op.GROUPNORM, "group norm: each image's channels in g= groups, each standardised over its channels and "
          "positions, then a learned scale and shift per channel", GroupNormSpec.from_items, "norm",
          ("g", "eps"), ("gn",), {"num_groups": "g"}, channelwise=True, trained=True, torch="nn.GroupNorm",
          torch_args=(pos("num_groups", "g"), pos("num_channels", IN_CHANNELS), _EPS), example="groupnorm:g=8"),
    OpDef(Op.LAYERNORM, "layer norm over the channels (channels-first, ConvNeXt's LayerNorm2d): the C values at "
          "each position standardised, then a learned scale and shift per channel", LayerNormSpec.from_items,
          "norm", ("eps",), ("ln", "layernorm2d"), channelwise=True, pointwise=True, trained=True,
          torch="nn.LayerNorm", torch_args=(pos("normalized_shape", IN_CHANNELS), _EPS),
          call="{m}({x}.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)", example="layernorm"),
    OpDef(Op.DROPOUT, "dropout (run: the identity, as in eval mode)", DropoutSpec.from_items, keys=("p",),
          key_aliases={"prob": "p", "rate": "p"}, channelwise=True, pointwise=True, train_mode=True,
          torch="nn.Dropout", torch_args=(pos("p", "p"),), example="dropout:p=0.5"),
    OpDef(Op.MAGNITUDE, "sqrt of the sum of squares over the channels (Sobel X/Y -> edge strength)",
          NoParams.from_items, "magnitude", aliases=("mag",), pointwise=True, torch="magnitude",
          code="{x}.pow(2).sum(dim=1, keepdim=True).sqrt()", example="magnitude"),
    OpDef(Op.FLATTEN, "(N, C, H, W) -> (N, C*H*W)", NoParams.from_items, "flatten", torch="nn.Flatten",
          example="flatten"),
    OpDef(Op.LINEAR, "fully connected layer on the last dimension", LinearSpec.from_items, "linear",
          ("out", "bias"), ("fc", "dense"), learnable=True, trained=True, torch="nn.Linear",
          torch_args=(pos("in_features", "in"), pos("out_features", "out"), kw("bias", "bias", True)),
          example="linear:out=10"),
    OpDef(Op.SAVE, "keep the current tensor as NAME for a later add:NAME, mul:NAME or cat:NAME", _branch, "save",
          aliases=("mark",), channelwise=True, torch="identity", example="save:a", named=True),
    OpDef(Op.ADD, "add the tensor saved as NAME (a residual connection); add:NAME(STAGE ...) runs a side branch "
          "on it first", _branch, "add", aliases=("residual",), torch="torch.add", code="{x} + {other}",
          example="add:a", named=True),
    OpDef(Op.MUL, "multiply by the tensor saved as NAME, a (N, C, 1, 1) gate broadcast over H and W (squeeze-"
          "excitation); mul:NAME(STAGE ...) runs a side branch on it first", _branch, "mul", aliases=("multiply",),
          torch="torch.mul", code="{x} * {other}", example="mul:a", named=True),
    OpDef(Op.CAT, "concatenate the tensor saved as NAME after the current channels (a skip connection); "
          "cat:NAME(STAGE ...) runs a side branch on it first", _branch, "cat", aliases=("concat",),
          torch="torch.cat", code="torch.cat([{x}, {other}], dim=1)", example="cat:a", named=True),
)

#: Op -> its definition, in documentation order.
REGISTRY: Mapping[Op, OpDef] = MappingProxyType({d.op: d for d in _DEFS})


def _normal(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


_BY_NAME: dict[str, OpDef] = {}
for _d in _DEFS:
    for _n in (_d.name, *_d.aliases):
        _BY_NAME[_normal(_n)] = _d


def lookup(name: str) -> OpDef | None:
    """The definition an op name or alias means (case, ``-`` and ``_`` ignored), or None."""
    return _BY_NAME.get(_normal(name))


def valid_ops() -> list[str]:
    """The canonical op names, in documentation order."""
    return [d.name for d in _DEFS]


def with_flag(flag: str) -> frozenset[Op]:
    """The ops whose definition sets ``flag`` (``channelwise``, ``pointwise``, ``learnable``, ``trained``...)."""
    return frozenset(d.op for d in _DEFS if getattr(d, flag))


def keys_help() -> str:
    """``conv out,k,s,...; convt ...`` for the ops that take keys (the ``shape`` help text)."""
    return "; ".join(f"{d.name} {','.join(d.keys)}" for d in _DEFS if d.keys)
