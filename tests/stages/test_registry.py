"""The registry is the one definition of every op: parsing, help, capabilities and the oracle come from it."""

from __future__ import annotations

import pytest

from featcli.errors import SpecError
from featcli.shape.rules import RULES
from featcli.stages.registry import REGISTRY, Op, keys_help, lookup, valid_ops, with_flag
from featcli.stages.spec import is_op_name, parse_stage


def test_every_op_has_one_definition() -> None:
    assert list(REGISTRY) == list(Op)
    for op, d in REGISTRY.items():
        assert d.op is op and d.summary and d.torch and d.example, op
        assert d.shape_rule in RULES, op
        assert parse_stage(d.example).op is op  # the example in the help text parses to the op


def test_aliases_are_unique_and_normalised() -> None:
    seen: dict[str, Op] = {}
    for d in REGISTRY.values():
        for name in (d.name, *d.aliases):
            assert seen.setdefault(name, d.op) is d.op, name
    assert lookup("maxpool2d") is REGISTRY[Op.MAXPOOL]
    assert is_op_name("conv:w=sobel_x") and is_op_name("LeakyReLU") and not is_op_name("photo.jpg")


@pytest.mark.parametrize(("text", "field", "value"), [
    ("leakyrelu:negative_slope=0.2", "negative_slope", 0.2),
    ("leakyrelu:slope=0.3", "negative_slope", 0.3),
    ("leakyrelu", "negative_slope", 0.01),
    ("prelu:num_parameters=1", "num_parameters", 1),
    ("prelu:n=2", "num_parameters", 2),
    ("prelu:init=0.1", "init", 0.1),
    ("prelu:w=net.pt:prelu1.weight", "weights", "net.pt:prelu1.weight"),
    ("dropout:prob=0.3", "p", 0.3),
])
def test_op_keys_and_their_aliases(text: str, field: str, value: object) -> None:
    assert getattr(parse_stage(text).params, field) == value


@pytest.mark.parametrize(("text", "message"), [
    ("softmax:dim=2", "softmax takes no keys"),
    ("leakyrelu:slope=x", "expected a number"),
    ("leakyrelu:k=3", "unknown key 'k' for leakyrelu; valid keys: slope"),
    ("prelu:w=a.pt:k,n=2", "cannot be combined with w="),
    ("mxpool:k=2", "unknown op 'mxpool'"),
])
def test_refusals(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_stage(text)


def test_flags_and_help_come_from_the_registry() -> None:
    assert {Op.RELU, Op.LEAKYRELU, Op.PRELU, Op.SOFTMAX, Op.MAXPOOL} <= with_flag("channelwise")
    assert Op.MAGNITUDE not in with_flag("channelwise") and Op.BN not in with_flag("pointwise")
    assert {Op.CONV, Op.CONVT, Op.LINEAR, Op.PRELU} == with_flag("learnable")
    text = keys_help()
    assert all(f"{d.name} {','.join(d.keys)}" in text for d in REGISTRY.values() if d.keys)
    assert valid_ops()[:2] == ["conv", "convt"] and len(valid_ops()) == len(Op)


def test_every_op_is_a_torch_module_or_an_expression() -> None:
    """``--code`` and the torch backend read an op's module from here; an op that is none has an expression."""
    for d in REGISTRY.values():
        if d.torch.startswith("nn."):
            assert not d.code and [a.positional for a in d.torch_args] == sorted(
                (a.positional for a in d.torch_args), reverse=True), d.name  # positional arguments first
        else:
            assert not d.torch_args and (d.code or d.op is Op.SAVE), d.name
    # padded: the op's p is the module's padding (dropout's p is a probability)
    assert {d.op for d in REGISTRY.values() if any(a.name == "padding" and a.key == "p" for a in d.torch_args)} == \
        with_flag("padded") == {Op.CONV, Op.CONVT, Op.MAXPOOL, Op.AVGPOOL}
    # the norms store tensors (affine weights, bn's running statistics) that start constant: no seed
    assert with_flag("learnable") < with_flag("trained") and \
        with_flag("trained") - with_flag("learnable") == {Op.BN, Op.GROUPNORM, Op.LAYERNORM}
    assert {d.op for d in REGISTRY.values() if d.call} == {Op.LAYERNORM}  # LayerNorm(C) on the channels-last view


@pytest.mark.parametrize(("config", "args", "kwargs", "pad"), [
    ({"in": 3, "out": 8, "k": [3, 3], "s": [1, 1], "p": [[0, 0], [0, 0]], "d": [1, 1], "g": 1, "bias": True,
      "pm": "reflect"}, (3, 8, (3, 3)), (), None),  # no padding: no padding_mode either
    ({"in": 4, "out": 8, "k": [3, 5], "s": [2, 1], "p": [[2, 2], [1, 1]], "d": [2, 2], "g": 2, "bias": False,
      "pm": "circular"}, (4, 8, (3, 5)), (("stride", (2, 1)), ("padding", (2, 1)), ("dilation", (2, 2)),
                                          ("groups", 2), ("bias", False), ("padding_mode", "circular")), None),
    ({"in": 1, "out": 1, "k": [2, 2], "s": [1, 1], "p": [[0, 1], [0, 1]], "d": [1, 1], "g": 1, "bias": True,
      "pm": "zeros"}, (1, 1, (2, 2)), (), ("ZeroPad2d", (0, 1, 0, 1))),  # uneven: a padding module first
])
def test_a_conv_module_call(config: dict[str, object], args: tuple[object, ...], kwargs: tuple[object, ...],
                            pad: object) -> None:
    from featcli.stages.modules import module_call

    call = module_call(REGISTRY[Op.CONV], config, 1)
    assert call is not None and (call.cls, call.args, call.kwargs, call.pad) == ("Conv2d", args, kwargs, pad)
    assert module_call(REGISTRY[Op.ABS], {}, 1) is None
