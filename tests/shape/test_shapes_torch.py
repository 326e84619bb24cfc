"""The pure-integer shape engine against real torch modules, over thousands of random stacks.

Every stack is written as stage-language text, parsed, and run twice: through :func:`featcli.shape.infer.infer`
and through the torch modules the stages stand for (:data:`ORACLE`, keyed by each registry entry's ``torch``)
on a tiny real tensor. The engine must refuse exactly the stage torch refuses, and agree on every output
shape and parameter count otherwise.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from featcli.errors import ShapeError  # noqa: E402
from featcli.shape.infer import infer  # noqa: E402
from featcli.stages.params import (  # noqa: E402
    AdaptivePoolSpec,
    BatchNormSpec,
    BranchSpec,
    ConvSpec,
    ConvTSpec,
    DropoutSpec,
    GeluSpec,
    GroupNormSpec,
    LeakyReLUSpec,
    LinearSpec,
    Params,
    PoolSpec,
    PReLUSpec,
    UpsampleSpec,
)
from featcli.stages.registry import REGISTRY, Op  # noqa: E402
from featcli.stages.spec import Stage, parse_stage, parse_stages, split_stack  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

N_STACKS = 6000
SEED = 1  # a seed whose stacks reach every refusal of REASONS (the rarest: one-value groups, broadcasting)
#: Fragments of every refusal message the engine has; the random stacks must trigger each.
REASONS = (
    "not divisible by groups", "is larger than the input", "reflect padding", "circular padding",
    "output_padding", "strided convolutions", "at most half the kernel", "too small", "needs a 4-D",
    "slopes for", "needs equal shapes", "only the channels may differ", "no tensor is saved",
    "shapes that broadcast", "cannot be split into", "holds one value", "sizes must be greater than 0",
)

Module = Callable[..., torch.Tensor]


def _magnitude(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 4:
        raise RuntimeError("magnitude needs (N, C, H, W)")
    return x.pow(2).sum(1, keepdim=True).sqrt()


def _c(shape: tuple[int, ...]) -> int:
    # On a 2-D (N, F) tensor torch refuses every channel-wise 2-D module; build it small, let forward refuse.
    return shape[1] if len(shape) == 4 else 1


def _conv(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, ConvSpec)
    assert sp.kernel_size is not None and not isinstance(sp.padding, str) or sp.padding in ("same", "valid")
    c = _c(shape)
    return nn.Conv2d(c, c if sp.out is None else sp.out, sp.kernel_size, stride=sp.stride, padding=sp.padding,
                     dilation=sp.dilation, groups=sp.groups, bias=sp.bias, padding_mode=sp.padding_mode.value)


def _convt(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, ConvTSpec)
    c = _c(shape)
    return nn.ConvTranspose2d(c, c if sp.out is None else sp.out, sp.kernel_size, stride=sp.stride,
                              padding=sp.padding, output_padding=sp.output_padding, groups=sp.groups, bias=sp.bias,
                              dilation=sp.dilation)


def _pool(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, PoolSpec)
    if sp.kind == "max":
        return nn.MaxPool2d(sp.kernel_size, stride=sp.stride, padding=sp.padding, dilation=sp.dilation,
                            ceil_mode=sp.ceil_mode)
    return nn.AvgPool2d(sp.kernel_size, stride=sp.stride, padding=sp.padding, ceil_mode=sp.ceil_mode,
                        count_include_pad=sp.count_include_pad)


def _adaptive(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, AdaptivePoolSpec)
    # A tuple output size, so that torch refuses a 2-D input as the engine does.
    return (nn.AdaptiveAvgPool2d if sp.kind == "avg" else nn.AdaptiveMaxPool2d)(tuple(sp.output_size))


def _prelu(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, PReLUSpec) and sp.weights is None
    # PReLU's channel axis is dim 1 of any input, (N, F) included.
    return nn.PReLU(shape[1] if sp.num_parameters is None else sp.num_parameters, init=sp.init)


def _linear(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, LinearSpec)
    return nn.Linear(shape[-1], sp.out, bias=sp.bias)


def _dropout(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, DropoutSpec)
    return nn.Dropout(sp.p).eval()


def _bn(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, BatchNormSpec)
    return nn.BatchNorm2d(_c(shape), eps=sp.eps).eval()


def _leaky(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, LeakyReLUSpec)
    return nn.LeakyReLU(sp.negative_slope)


def _four_d(mod: Module) -> Module:
    # featcli's choice: these stages act on (N, C, H, W) only (torch's GroupNorm also takes (N, C)).
    def run(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise RuntimeError("needs (N, C, H, W)")
        return mod(x, *rest)

    return run


def _upsample(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, UpsampleSpec)
    return nn.Upsample(size=sp.output_size, scale_factor=sp.scale_factor, mode=sp.mode.value,
                       align_corners=sp.align_corners, recompute_scale_factor=sp.recompute_scale_factor)


def _groupnorm(sp: Params, shape: tuple[int, ...]) -> Module:
    assert isinstance(sp, GroupNormSpec)
    return nn.GroupNorm(sp.groups, _c(shape), eps=sp.eps)


class _LayerNorm2d(nn.LayerNorm):
    """ConvNeXt's channels-first LayerNorm, written independently of featcli."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise RuntimeError("needs (N, C, H, W)")
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _mul(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    # featcli's choice: torch's * also broadcasts tensors of different ranks (aligned from the right).
    if x.dim() != other.dim():
        raise RuntimeError(f"mul of ranks {x.dim()} and {other.dim()}")
    return x * other


#: The oracle: ``OpDef.torch`` (the torch module an op equals) -> the module built from the parsed params.
ORACLE: dict[str, Callable[[Params, tuple[int, ...]], Module]] = {
    "nn.Conv2d": _conv,
    "nn.ConvTranspose2d": _convt,
    "nn.MaxPool2d": _pool,
    "nn.AvgPool2d": _pool,
    "nn.AdaptiveAvgPool2d": _adaptive,
    "nn.AdaptiveMaxPool2d": _adaptive,
    "nn.ReLU": lambda sp, shape: nn.ReLU(),
    "nn.LeakyReLU": _leaky,
    "nn.PReLU": _prelu,
    "nn.Sigmoid": lambda sp, shape: nn.Sigmoid(),
    "nn.Tanh": lambda sp, shape: nn.Tanh(),
    "nn.Softmax": lambda sp, shape: nn.Softmax(dim=1),  # over the channels
    "nn.GELU": lambda sp, shape: nn.GELU(approximate=sp.approximate.value) if isinstance(sp, GeluSpec) else None,
    "nn.SiLU": lambda sp, shape: nn.SiLU(),
    "nn.Hardswish": lambda sp, shape: nn.Hardswish(),
    "nn.Hardsigmoid": lambda sp, shape: nn.Hardsigmoid(),
    "nn.ReLU6": lambda sp, shape: nn.ReLU6(),
    "nn.Upsample": _upsample,
    "nn.GroupNorm": _groupnorm,
    "nn.LayerNorm": lambda sp, shape: _LayerNorm2d(_c(shape), eps=sp.eps),
    "torch.abs": lambda sp, shape: torch.abs,
    "nn.BatchNorm2d": _bn,
    "nn.Dropout": _dropout,
    "magnitude": lambda sp, shape: _magnitude,
    "nn.Flatten": lambda sp, shape: nn.Flatten(),
    "nn.Linear": _linear,
    # Branches take two tensors: _torch_walk keeps the saved ones and calls these on (current, other).
    "identity": lambda sp, shape: lambda x: x,
    "torch.add": lambda sp, shape: _strict_add,
    "torch.mul": lambda sp, shape: _mul,
    "torch.cat": lambda sp, shape: lambda x, other: torch.cat((x, other), 1),
}


def _strict_add(x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    # featcli's deliberate choice (docs/shape.md): torch's + would broadcast (1, 1, H, W) against (1, C, H, W).
    if x.shape != other.shape:
        raise RuntimeError(f"add of unequal shapes {tuple(x.shape)} and {tuple(other.shape)}")
    return x + other


def _module(stage: Stage, shape: tuple[int, ...]) -> Module:
    """The torch module a stage stands for (its registry entry's ``torch``), built from its parsed parameters
    (not from the engine)."""
    return ORACLE[REGISTRY[stage.op].torch](stage.params, shape)


def test_every_op_has_an_oracle() -> None:
    missing = {d.name: d.torch for d in REGISTRY.values() if d.torch not in ORACLE}
    assert not missing, f"ops whose torch equivalent has no oracle entry: {missing}"
    assert set(ORACLE) == {d.torch for d in REGISTRY.values()}, "oracle entries no op uses"


def _size(rng: random.Random, lo: int, hi: int, square: float = 0.7) -> str:
    a = rng.randint(lo, hi)
    return str(a) if rng.random() < square else f"{a}x{rng.randint(lo, hi)}"


def _random_stage(rng: random.Random, branches: bool = True) -> str:
    if branches and rng.random() < 0.15:
        name = rng.choice("ab")
        kind = rng.choices(["save", "add", "cat", "mul"], weights=[5, 3, 3, 2])[0]
        if kind != "save" and rng.random() < 0.5:
            inner = " ".join(_random_stage(rng, False) for _ in range(rng.randint(1, 2)))
            return f"{kind}:{name}({inner})"
        return f"{kind}:{name}"
    kind = rng.choices(
        ["conv", "convt", "maxpool", "avgpool", "adaptive", "global", "simple", "flatten", "linear", "upsample"],
        weights=[30, 12, 14, 12, 4, 3, 16, 4, 4, 4])[0]
    keys: list[str] = []

    def maybe(p: float, text: str) -> None:
        if rng.random() < p:
            keys.append(text)

    if kind == "conv":
        maybe(0.6, f"out={rng.choice([1, 2, 3, 4, 6])}")
        maybe(0.9, f"k={_size(rng, 1, 7)}")
        maybe(0.4, f"s={_size(rng, 1, 3)}")
        if rng.random() < 0.2:
            keys.append(f"p={rng.choice(['same', 'valid'])}")
        else:
            maybe(0.6, f"p={_size(rng, 0, 4)}")
        maybe(0.3, f"d={_size(rng, 1, 3)}")
        maybe(0.3, f"g={rng.choice([1, 2, 3])}")
        maybe(0.2, f"bias={rng.randint(0, 1)}")
        maybe(0.4, f"pm={rng.choice(['zeros', 'reflect', 'replicate', 'circular'])}")
    elif kind == "convt":
        maybe(0.6, f"out={rng.choice([1, 2, 3, 4, 6])}")
        maybe(0.9, f"k={_size(rng, 1, 5)}")
        maybe(0.6, f"s={_size(rng, 1, 3)}")
        maybe(0.5, f"p={_size(rng, 0, 3)}")
        maybe(0.5, f"op={_size(rng, 0, 2)}")
        maybe(0.3, f"d={_size(rng, 1, 3)}")
        maybe(0.3, f"g={rng.choice([1, 2, 3])}")
        maybe(0.2, f"bias={rng.randint(0, 1)}")
    elif kind in ("maxpool", "avgpool"):
        keys.append(f"k={_size(rng, 1, 5)}")
        maybe(0.5, f"s={_size(rng, 1, 3)}")
        maybe(0.5, f"p={_size(rng, 0, 3)}")
        if kind == "maxpool":
            maybe(0.3, f"d={_size(rng, 1, 3)}")
        else:
            maybe(0.3, f"cip={rng.randint(0, 1)}")
        maybe(0.5, f"ceil={rng.randint(0, 1)}")
    elif kind == "adaptive":
        kind = rng.choice(["adaptiveavg", "adaptivemax"])
        keys.append(f"o={_size(rng, 1, 8)}")
    elif kind == "global":
        kind = rng.choice(["gap", "gmp"])
    elif kind == "simple":
        kind = rng.choice(["relu", "sigmoid", "tanh", "abs", "bn", "dropout", "magnitude", "leakyrelu", "prelu",
                           "softmax", "gelu", "silu", "hardswish", "hardsigmoid", "relu6", "groupnorm",
                           "layernorm"])
        if kind == "dropout":
            maybe(0.5, f"p={rng.choice(['0', '0.1', '0.5', '1'])}")
        elif kind == "leakyrelu":
            maybe(0.5, f"slope={rng.choice(['0', '0.01', '0.2', '-0.5', '1'])}")
        elif kind == "prelu":
            maybe(0.5, f"n={rng.choice([1, 2, 3, 4])}")
            maybe(0.3, f"init={rng.choice(['0', '0.25', '-1'])}")
        elif kind == "gelu":
            maybe(0.5, f"approx={rng.choice(['none', 'tanh'])}")
        elif kind == "groupnorm":
            keys.append(f"g={rng.choice([1, 2, 3, 4])}")
            maybe(0.3, "eps=0.001")
    elif kind == "upsample":
        mode = rng.choice(["nearest", "bilinear"])
        maybe(0.8, f"mode={mode}")
        if rng.random() < 0.6:
            keys.append(f"sf={rng.choice(['2', '3', '0.5', '1.5', '1.7', '0.3', '2x1', '1.25x0.8', '0.01', '1.1'])}")
            maybe(0.3, f"rsf={rng.randint(0, 1)}")
        else:
            keys.append(f"o={_size(rng, 1, 12)}")
        if mode == "bilinear" and any(k.startswith("mode") for k in keys):
            maybe(0.4, f"ac={rng.randint(0, 1)}")
    elif kind == "linear":
        keys.append(f"out={rng.randint(1, 8)}")
        maybe(0.3, f"bias={rng.randint(0, 1)}")
    rng.shuffle(keys)
    return kind + (":" + ",".join(keys) if keys else "")


Walk = tuple[list[tuple[int, ...]], list[int], "int | None", str]


_TOO_SMALL = re.compile(r"Calculated output size per channel: \((-?\d+) x (-?\d+)\)\. Output size is too small")


def _run(mod: Module, x: torch.Tensor) -> torch.Tensor:
    """``mod(x)``, with torch's two answers to a transposed conv of output size 0 made one.

    torch's reference kernel (a batch of one, few threads, small kernels) refuses a zero-size output ("Output
    size is too small") where its oneDNN path (groups > 1, batch > 1, bigger kernels...) returns an empty
    tensor. featcli takes the empty tensor (its torch backend builds it) and refuses only a negative size.
    """
    try:
        return mod(x)
    except RuntimeError as exc:
        m = _TOO_SMALL.search(str(exc))
        if not isinstance(mod, nn.ConvTranspose2d) or not m or min(int(m[1]), int(m[2])) < 0:
            raise
        return torch.empty(x.shape[0], mod.out_channels, int(m[1]), int(m[2]))


class _Refused(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


def _torch_walk(shape: tuple[int, int, int, int], stages: list[Stage], x: torch.Tensor | None = None,
                done: int = 0) -> Walk:
    """Shapes and parameter counts torch produces, and the 1-based stage it refuses (or None).

    Side branches are walked here by recursion, independently of featcli's flattening: a branch's stages
    are counted (and listed) before the ``add``/``cat`` that ends it. ``x``/``done``: start from this tensor
    as if ``done`` stages had already run.
    """
    shapes: list[tuple[int, ...]] = []
    params: list[int] = []
    saved: dict[str, torch.Tensor] = {}

    def walk(x: torch.Tensor, stages: Sequence[Stage]) -> torch.Tensor:
        for stage in stages:
            sp = stage.params
            other = None
            if isinstance(sp, BranchSpec) and stage.op is not Op.SAVE:
                if sp.name not in saved:
                    raise _Refused(done + len(shapes) + 1, f"nothing saved as {sp.name}")
                other = walk(saved[sp.name], sp.branch) if sp.branch else saved[sp.name]
            index = done + len(shapes) + 1
            try:
                mod = _module(stage, tuple(x.shape))
                x = _run(mod, x) if other is None else mod(x, other)
            except (RuntimeError, ValueError, TypeError, IndexError) as exc:
                raise _Refused(index, str(exc).splitlines()[0]) from None
            if isinstance(sp, BranchSpec) and stage.op is Op.SAVE:
                saved[sp.name] = x
            shapes.append(tuple(x.shape))
            params.append(sum(p.numel() for p in mod.parameters()) if isinstance(mod, nn.Module) else 0)
        return x

    try:
        walk(torch.zeros(shape) if x is None else x, stages)
    except _Refused as exc:
        return shapes, params, exc.index, str(exc)
    return shapes, params, None, ""


def _engine_walk(shape: tuple[int, int, int, int], stages: list[Stage]) -> Walk:
    try:
        report = infer(shape, stages)
    except ShapeError as exc:
        index = int(str(exc).split()[1])
        rows = exc.partial.stages  # the rows before the refused one
        assert len(rows) == index - 1
        return [r.out_shape for r in rows], [r.params for r in rows], index, str(exc)
    return [r.out_shape for r in report.stages], [r.params for r in report.stages], None, ""


def _cases() -> list[tuple[tuple[int, int, int, int], list[str]]]:
    rng = random.Random(SEED)
    cases = []
    for _ in range(N_STACKS):
        shape = (rng.choice([1, 1, 2]), rng.randint(1, 4), rng.randint(1, 40), rng.randint(1, 40))
        cases.append((shape, [_random_stage(rng) for _ in range(rng.randint(1, 4))]))
    return cases


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    # Tiny tensors: OpenMP hand-offs between ops would cost more than the ops themselves.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_random_stacks_agree_with_torch(one_thread: None) -> None:
    torch.manual_seed(0)
    refused = {"engine": 0, "torch": 0}
    ops_seen: set[str] = set()
    with torch.no_grad():
        for shape, texts in _cases():
            stages = parse_stages(texts)
            ops_seen.update(s.op.value for s in stages)
            e_shapes, e_params, e_fail, e_msg = _engine_walk(shape, stages)
            t_shapes, t_params, t_fail, t_msg = _torch_walk(shape, stages)
            query = f"{'x'.join(map(str, shape))} {' '.join(texts)}"
            assert e_fail == t_fail, f"{query}: engine refuses at {e_fail} ({e_msg}), torch at {t_fail} " \
                                     f"({t_msg})"
            assert e_shapes == t_shapes, query
            assert e_params == t_params, query
            if e_fail is not None:
                refused.update({r: refused.get(r, 0) + 1 for r in REASONS if r in e_msg})
                refused["engine"] += 1
    # The generator must exercise both outcomes, every op and every kind of refusal.
    assert N_STACKS // 5 < refused["engine"] < N_STACKS * 4 // 5, refused
    assert all(refused.get(r) for r in REASONS), {r: refused.get(r, 0) for r in REASONS}
    assert ops_seen == {op.value for op in Op}, {op.value for op in Op} - ops_seen


@pytest.mark.parametrize(("query", "expected"), [
    ("conv:out=5,k=3x5,s=1x2,p=2", (1, 5, 642, 320)),
    ("conv:out=8,k=4,p=same", (1, 8, 640, 640)),
    ("conv:k=4,d=2,p=same,pm=reflect", (1, 3, 640, 640)),
    ("maxpool:k=3,s=2,p=1,ceil=1", (1, 3, 321, 321)),
])
def test_tutorial_examples_match_torch(query: str, expected: tuple[int, ...]) -> None:
    stage = parse_stage(query)
    assert infer((1, 3, 640, 640), [stage]).output == expected
    with torch.no_grad():
        x = torch.zeros(1, 3, 640, 640, device="meta")
        assert tuple(_module(stage, (1, 3, 640, 640))(x).shape) == expected


@pytest.mark.parametrize("size", [5, 7, 16, 33])
@pytest.mark.parametrize("spec", [
    "conv:k=3,p=?", "conv:k=5,s=2,p=?", "conv:k=3,d=2,p=?", "maxpool:k=3,s=2,p=?", "avgpool:k=2,p=?",
    "convt:k=3,s=2,p=1,op=?", "convt:k=4,s=2,p=?", "convt:k=3,s=2,p=?,op=?", "conv:k=3,s=2,p=?9",
])
def test_solved_padding_gives_the_target_in_torch(size: int, spec: str) -> None:
    try:
        report = infer((1, 2, size, size), [parse_stage(spec)])
    except ShapeError as exc:
        # The solver says no padding works: torch must agree for every padding it accepts.
        assert spec == "conv:k=3,s=2,p=?9" and "no p gives H = 9" in str(exc)
        with torch.no_grad():
            sizes = {nn.Conv2d(2, 2, 3, stride=2, padding=p)(torch.zeros(1, 2, size, size)).shape[2]
                     for p in range(2 * size)}
        assert 9 not in sizes
        return
    row = report.stages[0]
    assert row.solved is not None and "?" not in str(row.resolved.params.padding)
    with torch.no_grad():
        out = _module(row.resolved, (1, 2, size, size))(torch.zeros(1, 2, size, size))
    assert tuple(out.shape) == row.out_shape
    sp = row.resolved.params
    assert isinstance(sp, (ConvSpec, ConvTSpec, PoolSpec))
    s = sp.stride
    target = getattr(sp, "target", None) or (
        (size * s[0], size * s[1]) if isinstance(sp, ConvTSpec) else (-(-size // s[0]), -(-size // s[1])))
    assert tuple(out.shape[2:]) == target


def test_receptive_field_matches_gradient_support() -> None:
    """rf from the engine equals the input area that one central output value depends on."""
    rng = random.Random(SEED)
    checked = 0
    for _ in range(60):
        texts = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.6:
                texts.append(f"conv:k={_size(rng, 1, 5)},s={_size(rng, 1, 2)},d={_size(rng, 1, 2)}")
            else:
                texts.append(f"avgpool:k={_size(rng, 1, 3)},s={_size(rng, 1, 2)}")
        stages = parse_stages(texts)
        try:
            report = infer((1, 1, 200, 200), stages)
        except ShapeError:
            continue
        x = torch.zeros(1, 1, 96, 96, requires_grad=True)
        y = x
        for st in stages:
            mod = _module(st, tuple(y.shape))
            if isinstance(mod, nn.Conv2d):
                nn.init.constant_(mod.weight, 1.0)
            y = mod(y)
        h, w = y.shape[2] // 2, y.shape[3] // 2
        y[0, 0, h, w].backward()
        nz = x.grad[0, 0].nonzero()
        extent = (int(nz[:, 0].max() - nz[:, 0].min()) + 1, int(nz[:, 1].max() - nz[:, 1].min()) + 1)
        assert extent == report.stages[-1].rf, texts
        checked += 1
    assert checked > 30


#: Stages of every op, for the zero-size and tiny inputs below (each op's registry name must appear).
EDGE_STAGES = (
    "conv:k=1", "conv:k=1,p=1", "conv:k=3,p=2", "conv:k=3,p=1,pm=replicate", "conv:k=1,pm=circular",
    "conv:k=2,p=same", "conv:k=3,p=1,pm=reflect", "conv:k=3,p=1,pm=circular", "conv:out=4,k=3,p=1",
    "convt:k=2,s=2", "convt:k=1,p=1", "convt:k=2,s=2,p=1", "convt:k=3,s=2,p=1,op=1", "convt:out=2,k=2,s=2,p=1,g=2",
    "maxpool:k=1", "maxpool:k=2", "maxpool:k=2,ceil=1", "maxpool:k=3,s=1,p=1", "maxpool:k=2,s=2,ceil=1,d=2",
    "avgpool:k=1", "avgpool:k=2,ceil=1", "avgpool:k=3,s=1,p=1", "avgpool:k=3,s=2,p=1,ceil=1,cip=0",
    "gap", "gmp", "adaptiveavg:o=1", "adaptiveavg:o=1x2", "adaptiveavg:o=3", "adaptivemax:o=1", "adaptivemax:o=2",
    "relu", "leakyrelu", "prelu", "prelu:n=1", "sigmoid", "tanh", "softmax", "abs", "bn", "dropout", "magnitude",
    "flatten", "linear:out=3", "flatten linear:out=3", "flatten softmax", "flatten prelu:n=1",
    "save:a relu add:a", "save:a conv:out=3,k=1 cat:a", "save:a add:a(conv:k=1 relu)", "save:a maxpool:k=1 cat:a(gap)",
    "flatten save:a linear:out=5 cat:a",
    "gelu", "gelu:approx=tanh", "silu", "hardswish", "hardsigmoid", "relu6", "groupnorm:g=2", "groupnorm:g=1",
    "layernorm",
    "upsample:sf=2", "upsample:sf=0.5", "upsample:sf=1.5,mode=bilinear", "upsample:o=3x1,mode=bilinear,ac=1",
    "upsample:sf=0.7,rsf=1", "save:a gap mul:a", "save:a mul:a(gap sigmoid)", "flatten save:a mul:a",
)
#: ``(N, C, H, W)`` inputs: empty maps (reached through a transposed conv whose output size is 0) and tiny ones.
EDGE_SHAPES = ((1, 2, 0, 0), (2, 2, 0, 3), (1, 2, 3, 0), (1, 2, 1, 1), (2, 2, 1, 3), (1, 2, 2, 2))


def test_edge_stages_cover_every_op() -> None:
    named = {parse_stage(t).op for spec in EDGE_STAGES for t in split_stack(spec)}
    assert named == set(Op), set(Op) - named


@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("spec", EDGE_STAGES)
def test_empty_and_tiny_inputs_agree_with_torch(shape: tuple[int, int, int, int], spec: str) -> None:
    """featcli refuses exactly where torch raises on an empty or 1-2 pixel map, and agrees on the shapes."""
    n, c, h, w = shape
    stages = parse_stages(split_stack(spec))
    if 0 in (h, w):  # an empty map can only come from a stage: convt:k=1,p=1 makes H - 2 rows of H
        prefix = parse_stage("convt:k=1,p=1")
        start: tuple[int, int, int, int] = (n, c, h + 2, w + 2)
        stages = [prefix, *stages]
    else:
        start = shape
    e_shapes, _, e_fail, e_msg = _engine_walk(start, stages)
    with torch.no_grad():
        if len(stages) > len(split_stack(spec)):  # the prefix made the empty map: torch starts from it
            t_shapes, _, t_fail, t_msg = _torch_walk(shape, stages[1:], done=1)
            t_shapes = [shape, *t_shapes]
        else:
            t_shapes, _, t_fail, t_msg = _torch_walk(shape, stages)
    assert e_fail == t_fail, f"{shape} {spec}: featcli refuses at {e_fail} ({e_msg}), torch at {t_fail} ({t_msg})"
    assert e_shapes == t_shapes
