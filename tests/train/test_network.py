"""The Network built from a plan has the `featcli shape --code` Net's state-dict names and computes the same."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from featcli.engine.network import Network, check_classifier, check_learnable
from featcli.errors import ShapeError, UsageError
from featcli.shape.code import module_code
from featcli.stages.spec import parse_stages
from tests.train.conftest import plan_for

STACKS = [
    ("conv:out=6,k=5,p=2", "relu", "maxpool:k=2", "conv:out=16,k=5", "relu", "maxpool:k=2", "flatten",
     "linear:out=120", "relu", "linear:out=10"),
    ("conv:out=4,k=4,p=same", "bn", "prelu", "dropout:p=0.2", "convt:out=3,k=2,s=2", "leakyrelu", "gap", "flatten",
     "linear:out=5"),
    ("conv:out=4,k=3,p=1", "save:a", "conv:out=4,k=3,p=1", "bn", "add:a", "save:b", "conv:out=8,k=3,s=2,p=1",
     "cat:b(conv:out=2,k=1,s=2 bn)", "gap", "flatten", "linear:out=3"),
]


def _code_net(plan: Any) -> torch.nn.Module:
    scope: dict[str, Any] = {}
    exec(module_code(plan.report, "test"), scope)  # noqa: S102 - featcli's own generated code
    net: torch.nn.Module = scope["Net"]()
    return net


@pytest.mark.parametrize("stack", STACKS, ids=["lenet", "bn-prelu-convt", "branches"])
def test_state_dict_names_and_forward_equal_the_code_net(stack: tuple[str, ...]) -> None:
    plan = plan_for(stack, (1, 16, 16))
    net = Network(plan)
    ref = _code_net(plan)
    assert list(net.state_dict()) == list(ref.state_dict())
    with torch.no_grad():  # make the running statistics and affine parameters non-trivial
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.rand_like(t) * 0.5)
    ref.load_state_dict(net.state_dict())
    ref.eval()
    net.eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), atol=1e-5, rtol=1e-5)


def test_conv_init_is_the_runs_seeded_init() -> None:
    """A Network starts from the weights `featcli run` gives a random conv (torch.manual_seed(seed); Conv2d)."""
    plan = plan_for(("conv:out=5,k=3", "flatten", "linear:out=2"), (3, 8, 8), seed=7)
    torch.manual_seed(7)
    ref = torch.nn.Conv2d(3, 5, 3)
    assert torch.equal(Network(plan).s1.weight, ref.weight)


def test_a_stack_without_one_score_per_class_is_refused_with_both_shapes() -> None:
    plan = plan_for(("conv:out=6,k=3", "flatten", "linear:out=84"), (1, 8, 8))
    with pytest.raises(ShapeError, match="the stack ends in 84 but digits has 10 classes; end with linear:out=10"):
        check_classifier(plan.report, 10, "digits")
    plan = plan_for(("conv:out=6,k=3",), (1, 8, 8))
    with pytest.raises(ShapeError, match=r"ends in 6x6x6 .* end with flatten linear:out=10"):
        check_classifier(plan.report, 10, "digits")
    check_classifier(plan_for(("conv:out=10,k=8",), (1, 8, 8)).report, 10, "digits")  # 1x10x1x1 is fine


def test_weights_from_files_are_not_trained() -> None:
    with pytest.raises(UsageError, match="conv:w=sobel_x.*learns its own"):
        check_learnable(parse_stages(["conv:w=sobel_x", "flatten", "linear:out=2"]))
