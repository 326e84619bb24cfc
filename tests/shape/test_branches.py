"""Branches in the stage language: save/add/cat, side branches, their refusals, and a residual block vs torch."""

from __future__ import annotations

import pytest

from featcli.errors import ShapeError, SpecError
from featcli.shape.infer import infer
from featcli.stages.params import BranchSpec
from featcli.stages.registry import Op
from featcli.stages.spec import join_split_stages, parse_stage, parse_stages, split_stack

RESIDUAL = ["save:a", "conv:out=128,k=3,s=2,p=1,bias=0", "bn", "relu", "conv:out=128,k=3,p=1,bias=0", "bn",
            "add:a(conv:out=128,k=1,s=2,bias=0 bn)", "relu"]


def test_cat_of_an_upsampled_map() -> None:
    report = infer((1, 8, 32, 32), parse_stages("save:a maxpool:k=2 convt:out=8,k=2,s=2 cat:a".split()))
    assert report.output == (1, 16, 32, 32)
    assert report.stages[-1].formulas == ("C: 8 + 8 = 16",)


def test_a_side_branch_is_rows_of_its_own_before_the_add() -> None:
    report = infer((1, 64, 56, 56), parse_stages(RESIDUAL))
    ops = [(r.index, r.op, r.branch, r.reads) for r in report.stages]
    assert ops[6:9] == [(7, "conv", "a", ("a",)), (8, "bn", "a", ()), (9, "add", None, ())]
    assert report.stages[6].in_shape == (1, 64, 56, 56)  # the branch reads the saved tensor
    assert report.output == (1, 128, 28, 28)
    # torchvision's BasicBlock(64, 128, stride=2) with its downsample: 230,144 parameters
    assert report.params == 73728 + 256 + 147456 + 256 + 8192 + 256
    # receptive field: the larger of the two paths (7 through two 3x3 convs, 1 through the 1x1 shortcut)
    assert report.stages[8].rf == (7, 7) and report.stages[7].rf == (1, 1)


def test_parsing() -> None:
    st = parse_stage("add:a(conv:k=1 bn)")
    assert st.op is Op.ADD and isinstance(st.params, BranchSpec)
    assert [s.op for s in st.params.branch] == [Op.CONV, Op.BN]
    assert parse_stage("concat:skip").op is Op.CAT
    assert split_stack("save:a relu\n add:a(conv:k=1  bn)")[2] == "add:a(conv:k=1  bn)"
    assert join_split_stages(["add:a(conv:k=1", "bn)", "relu"]) == ["add:a(conv:k=1 bn)", "relu"]


@pytest.mark.parametrize(("text", "message"), [
    ("save:", "save needs a name"),
    ("save:a(relu)", "save takes no side branch"),
    ("add:a()", "empty side branch"),
    ("add:a(conv:q=1)", "side branch stage 'conv:q=1': unknown key 'q'"),
    ("cat:a(relu", "not closed"),
])
def test_spec_refusals(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_stage(text)


@pytest.mark.parametrize(("stack", "message"), [
    ("save:a conv:out=128,k=3,s=2,p=1 bn add:a",
     "stage 4 'add:a': add needs equal shapes, but the current tensor is 1x128x28x28 (stage 3 'bn') and a is "
     "1x64x56x56 (saved at stage 1 'save:a'); give the saved tensor a side branch that matches, "
     "e.g. 'add:a(conv:out=128,k=1,s=2 bn)'"),
    ("save:a conv:out=128,k=3,s=2,p=1 add:a(conv:out=128,k=1)",
     "stage 4 'add:a(conv:out=128,k=1)': add needs equal shapes, but the current tensor is 1x128x28x28 "
     "(stage 2 'conv:out=128,k=3,s=2,p=1') and the branch of a is 1x128x56x56 (stage 3 'conv:out=128,k=1'); "
     "the branch must end at 1x128x28x28"),
    ("save:a maxpool:k=2 cat:a", "cat needs equal N, H and W (only the channels may differ)"),
    ("relu add:b", "stage 2 'add:b': no tensor is saved as 'b': put save:b before"),
    ("save:a add:b(relu)", "stage 2 'relu': no tensor is saved as 'b'"),
])
def test_refusals_name_both_shapes_and_stages(stack: str, message: str) -> None:
    with pytest.raises(ShapeError) as info:
        infer((1, 64, 56, 56), parse_stages(split_stack(stack)))
    assert message in str(info.value)
    assert info.value.partial is not None  # the rows before the refused stage


def test_nested_side_branches() -> None:
    stack = "save:a save:b conv:out=8,k=1 add:a(add:b(relu) conv:out=8,k=1)"
    report = infer((1, 4, 8, 8), parse_stages(split_stack(stack)))
    assert [(r.op, r.reads) for r in report.stages] == [
        ("save", ()), ("save", ()), ("conv", ()), ("relu", ("a", "b")), ("add", ()), ("conv", ()), ("add", ())]
    assert report.output == (1, 8, 8, 8)


def test_torch_oracle_for_a_residual_block() -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):  # torchvision's BasicBlock(64, 128, stride=2), written out
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(64, 128, 3, 2, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(128)
            self.conv2 = nn.Conv2d(128, 128, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(128)
            self.down = nn.Sequential(nn.Conv2d(64, 128, 1, 2, bias=False), nn.BatchNorm2d(128))

        def forward(self, x):  # type: ignore[no-untyped-def]
            a = x
            shapes = [x.shape]
            for m in (self.conv1, self.bn1, nn.ReLU(), self.conv2, self.bn2):
                x = m(x)
                shapes.append(x.shape)
            for m in self.down:
                a = m(a)
                shapes.append(a.shape)
            x = x + a
            shapes.append(x.shape)
            x = torch.relu(x)
            shapes.append(x.shape)
            return shapes

    block = Block()
    with torch.no_grad():
        shapes = [tuple(s) for s in block(torch.zeros(1, 64, 56, 56))]
    report = infer((1, 64, 56, 56), parse_stages(RESIDUAL))
    assert [r.out_shape for r in report.stages] == shapes
    assert report.params == sum(p.numel() for p in block.parameters())
