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
    ("leakyrelu:negative_slope=0.2", "slope", 0.2),
    ("leakyrelu", "slope", 0.01),
    ("prelu:num_parameters=1", "n", 1),
    ("prelu:init=0.1", "init", 0.1),
    ("prelu:w=net.pt:prelu1.weight", "w", "net.pt:prelu1.weight"),
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
