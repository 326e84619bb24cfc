"""The stage language (featcli.stages.spec) and the formula engine (featcli.shape.infer), without torch."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from featcli.enums import Channels, KernelMode, PaddingMode
from featcli.errors import ImageLoadError, KernelError, ShapeError, SpecError
from featcli.shape.infer import apply_target, has_solve, infer
from featcli.shape.inputs import resolve_input
from featcli.shape.report import ShapeReport
from featcli.stages.grammar import (
    SOLVE,
    format_shape,
    looks_like_shape,
    parse_input_shape,
    parse_size,
    split_refs,
    split_top_level,
)
from featcli.stages.params import AdaptivePoolSpec, ConvSpec, ConvTSpec, LinearSpec, NoParams, PoolSpec
from featcli.stages.registry import Op, valid_ops
from featcli.stages.spec import parse_stage, parse_stages, valid_keys

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "shapes.png"  # 320x240 RGB


def run(shape: str, *texts: str) -> ShapeReport:
    return infer(parse_input_shape(shape), parse_stages(texts))


# --- parsing ---------------------------------------------------------------------------------------
def test_conv_defaults_are_torchs() -> None:
    sp = parse_stage("conv").params
    assert sp == ConvSpec(out=None, kernel_size=(3, 3), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                          bias=True, padding_mode=PaddingMode.ZEROS)


def test_every_key_and_alias() -> None:
    a = parse_stage("conv:out=5,k=3x5,s=1x2,p=2,d=2,g=1,bias=0,pm=reflect").params
    b = parse_stage("Conv2d:out_channels=5,kernel_size=3x5,stride=1x2,padding=2,dilation=2,groups=1,"
                    "bias=false,padding_mode=REFLECT").params
    assert a == b == ConvSpec(out=5, kernel_size=(3, 5), stride=(1, 2), padding=(2, 2), dilation=(2, 2), bias=False,
                              padding_mode=PaddingMode.REFLECT)
    assert parse_stage("convt:out=4,k=4,s=2,p=1,op=1,d=1,g=2,bias=1").params == \
        ConvTSpec(out=4, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1), output_padding=(1, 1), groups=2)
    assert parse_stage("deconv:output_padding=1,stride=2").params == \
        ConvTSpec(stride=(2, 2), output_padding=(1, 1))
    assert parse_stage("maxpool:k=3,s=2,p=1,d=2,ceil=1").params == \
        PoolSpec("max", kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), dilation=(2, 2), ceil_mode=True)
    assert parse_stage("avgpool:kernel_size=2,count_include_pad=0,ceil_mode=1").params == \
        PoolSpec("avg", kernel_size=(2, 2), stride=(2, 2), ceil_mode=True, count_include_pad=False)
    assert parse_stage("maxpool:k=2").params.stride == (2, 2)  # type: ignore[union-attr]
    assert parse_stage("maxpool:k=3x2").params.stride == (3, 2)  # type: ignore[union-attr]
    assert parse_stage("adaptiveavg:o=7x5").params == AdaptivePoolSpec("avg", (7, 5))
    assert parse_stage("gmp").params == AdaptivePoolSpec("max", (1, 1))
    assert parse_stage("linear:out=10,bias=0").params == LinearSpec(10, bias=False)
    assert parse_stage("fc:out=3").op is Op.LINEAR
    assert parse_stage("dropout:p=0.2").params.p == 0.2  # type: ignore[union-attr]
    assert parse_stage("bn:eps=0.001").params.eps == 0.001  # type: ignore[union-attr]
    assert parse_stage("relu").params == NoParams()
    assert parse_stage(" Batch_Norm ").op is Op.BN


def test_padding_strings_and_solver_markers() -> None:
    assert parse_stage("conv:p=same").params.padding == "same"  # type: ignore[union-attr]
    assert parse_stage("conv:p=VALID").params.padding == "valid"  # type: ignore[union-attr]
    sp = parse_stage("conv:k=3,p=?").params
    assert isinstance(sp, ConvSpec) and sp.padding == SOLVE and sp.target is None
    sp = parse_stage("conv:k=3,s=2,p=?32x16").params
    assert isinstance(sp, ConvSpec) and sp.target == (32, 16)
    sp = parse_stage("convt:k=4,s=2,p=?,op=?64").params
    assert isinstance(sp, ConvTSpec) and sp.padding == sp.output_padding == SOLVE and sp.target == (64, 64)
    assert has_solve(parse_stage("maxpool:k=3,p=?")) and not has_solve(parse_stage("conv"))


def test_values_may_contain_commas_inside_brackets() -> None:
    sp = parse_stage("conv:w=gaussian(size=7,sigma=1.5)+sobel_x,p=1").params
    assert isinstance(sp, ConvSpec)
    assert sp.weights == ("gaussian(size=7,sigma=1.5)", "sobel_x") and sp.padding == (1, 1) and sp.kernel_size is None
    sp = parse_stage("conv:w=[[1,0,-1],[2,0,-2],[1,0,-1]]").params
    assert isinstance(sp, ConvSpec) and sp.weights == ("[[1,0,-1],[2,0,-2],[1,0,-1]]",)
    assert not sp.bias  # fixed kernels have no bias unless asked
    assert parse_stage("conv:w=sobel_x,mode=depthwise,bias=1").params.bias  # type: ignore[union-attr]
    assert split_top_level("a=f(1,2),b=[3,[4,5]],c={6,7}", ",") == ["a=f(1,2)", "b=[3,[4,5]]", "c={6,7}"]
    assert split_refs("[[1,+1]]+log(sigma=2)") == ("[[1,+1]]", "log(sigma=2)")


@pytest.mark.parametrize(("text", "fragment"), [
    ("pool:k=2", "unknown op 'pool'; valid ops: conv, convt, maxpool"),
    ("conv:q=2", "unknown key 'q' for conv; valid keys: out, k, s, p, d, g, bias, pm, w, mode"),
    ("avgpool:k=2,d=2", "unknown key 'd' for avgpool; valid keys: k, s, p, ceil, cip"),
    ("relu:x=1", "relu takes no keys"),
    ("conv:k=0", "k='0': sizes must be at least 1"),
    ("conv:k=3x", "k='3x': expected N or HxW"),
    ("conv:s=-1", "s='-1': expected N or HxW"),
    ("conv:out=two", "out='two': expected an integer"),
    ("conv:bias=2", "bias='2': expected 0 or 1"),
    ("conv:pm=mirror", "pm='mirror': expected one of zeros, reflect, replicate, circular"),
    ("conv:mode=gray", "mode= only applies to conv stages with w="),
    ("conv:w=sobel_x,out=3", "out cannot be combined with w="),
    ("conv:w=sobel_x+", "empty kernel reference"),
    ("conv:w=gaussian(size=7", "unclosed bracket"),
    ("conv:w=a)", "unbalanced ')'"),
    ("conv:k=3,k=5", "key 'k' given twice"),
    ("conv:kernel=3,k=5", "key 'k' given twice"),
    ("conv:k=3,,p=1", "empty item"),
    ("conv:k", "expected key=value, got 'k'"),
    ("conv:k=", "k= has no value"),
    ("convt:p=same", "convt takes integer padding"),
    ("maxpool", "maxpool needs k="),
    ("maxpool:k=2,p=?x", "p='?x'"),
    ("adaptiveavg", "adaptiveavg needs o=HxW"),
    ("linear", "linear needs out=N"),
    ("dropout:p=1.5", "p='1.5': must be in [0.0, 1.0]"),
])
def test_bad_syntax_names_the_token(text: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_stage(text, 3)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"stage 3 {text!r}: ")
    assert info.value.exit_code == 2


def test_valid_keys_and_ops_are_listed() -> None:
    assert valid_ops()[:4] == ["conv", "convt", "maxpool", "avgpool"]
    assert "magnitude" in valid_ops() and "linear" in valid_ops()
    assert valid_keys(Op.CONVT) == ("out", "k", "s", "p", "op", "d", "g", "bias")
    assert valid_keys(Op.RELU) == ()


def test_stages_are_frozen_and_cached() -> None:
    a = parse_stage("conv:k=3")
    assert parse_stage(" conv:k=3 ") is a
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.params.kernel_size = (5, 5)  # type: ignore[misc,union-attr]


@pytest.mark.parametrize(("text", "shape"), [
    ("1x3x640x480", (1, 3, 640, 480)), ("3x64x32", (1, 3, 64, 32)), ("28x28", (1, 1, 28, 28)),
    ("2X3X4X5", (2, 3, 4, 5)), ("[1,3,224,224]", (1, 3, 224, 224)), ("8*1*5*5", (8, 1, 5, 5)),
])
def test_input_shapes(text: str, shape: tuple[int, ...]) -> None:
    assert parse_input_shape(text) == shape
    assert looks_like_shape(text)


@pytest.mark.parametrize("text", ["64", "1x3x64x64x2", "1x0x4x4", "1x3x", "x4"])
def test_bad_input_shapes(text: str) -> None:
    with pytest.raises(SpecError, match="NxCxHxW|at least 1"):
        parse_input_shape(text)


def test_small_helpers() -> None:
    assert parse_size("3") == (3, 3) and parse_size("3x5") == (3, 5)
    assert format_shape((1, 5, 642, 320)) == "1x5x642x320"
    assert not looks_like_shape("photo.jpg") and not looks_like_shape("x")


# --- the engine ------------------------------------------------------------------------------------
def test_tutorial_example() -> None:
    report = run("1x3x640x640", "conv:out=5,k=3x5,s=1x2,p=2")
    assert list(report.output) == [1, 5, 642, 320]
    row = report.stages[0]
    assert row.formulas[0] == "H: floor((640 + 2*2 - 1*(3-1) - 1)/1) + 1 = 642"
    assert row.formulas[1] == "W: floor((640 + 2*2 - 1*(5-1) - 1)/2) + 1 = 320"
    assert row.params == 5 * 3 * 3 * 5 + 5
    assert row.macs == row.params * 642 * 320
    assert row.rf == (3, 5) and row.jump == (1, 2)
    assert any("W: 1 column dropped" in n and "padding only" in n for n in row.notes)


def test_dropped_rows_note_names_the_unseen_input() -> None:
    row = run("1x1x10x10", "conv:k=3,s=4").stages[0]
    assert row.out_shape == (1, 1, 2, 2)
    assert "H: 3 rows dropped: (H + 2P - D(K-1) - 1) = 7 not divisible by S = 4" in row.notes[0]
    assert "input rows 7..9 never seen" in row.notes[0]


def test_ceil_mode_partial_and_dropped_windows() -> None:
    row = run("1x1x5x5", "maxpool:k=2,s=2,ceil=1").stages[0]
    assert row.out_shape == (1, 1, 3, 3)
    assert row.formulas[0] == "H: ceil((5 + 2*0 - 1*(2-1) - 1)/2) + 1 = 3"
    assert "ceil_mode adds partial window 3 at 4..5" in row.notes[0]
    # ceil would give a third window, but it would start at 6 >= 5 + 1 (input + left padding): dropped.
    row = run("1x1x5x5", "maxpool:k=2,s=3,p=1,ceil=1").stages[0]
    assert row.out_shape == (1, 1, 2, 2)
    assert row.formulas[0] == "H: ceil((5 + 2*1 - 1*(2-1) - 1)/3) + 1 - 1 = 2"
    assert "H: ceil_mode window 3 would start at 6 >= 5 + 1" in row.notes[0]
    assert "so torch drops it" in row.notes[0]


def test_same_padding_is_asymmetric_for_even_kernels() -> None:
    row = run("1x2x9x9", "conv:k=4,p=same").stages[0]
    assert row.out_shape == (1, 2, 9, 9)
    assert row.config["p"] == [[1, 2], [1, 2]]
    assert row.formulas[0] == "H: floor((9 + 1+2 - 1*(4-1) - 1)/1) + 1 = 9"
    assert run("1x1x9x9", "conv:k=3,d=3,p=same").stages[0].config["p"] == [[3, 3], [3, 3]]


def test_counts() -> None:
    r = run("2x3x32x32", "conv:out=8,k=3,p=1", "bn", "relu", "maxpool:k=2", "flatten", "dropout",
            "linear:out=10")
    assert [list(s.out_shape) for s in r.stages] == [
        [2, 8, 32, 32], [2, 8, 32, 32], [2, 8, 32, 32], [2, 8, 16, 16], [2, 2048], [2, 2048], [2, 10]]
    assert [s.params for s in r.stages] == [224, 16, 0, 0, 0, 0, 20490]
    assert r.stages[0].macs == 2 * 32 * 32 * 224
    assert r.stages[1].macs == 2 * 8 * 32 * 32
    assert r.stages[-1].macs == 2 * 20490
    assert r.params == 224 + 16 + 20490 and r.macs == sum(s.macs for s in r.stages)
    t = run("1x4x8x8", "convt:out=2,k=3,s=2,g=2").stages[0]
    assert t.out_shape == (1, 2, 17, 17) and t.params == 4 * 1 * 9 + 2
    assert t.macs == 8 * 8 * 36 + 2 * 17 * 17


def test_receptive_field_and_jump() -> None:
    r = run("1x1x224x224", "conv:k=3", "conv:k=3", "maxpool:k=2", "conv:k=3,d=2", "gap")
    assert [s.rf for s in r.stages][:4] == [(3, 3), (5, 5), (6, 6), (14, 14)]
    assert [s.jump for s in r.stages][:4] == [(1, 1), (1, 1), (2, 2), (2, 2)]
    r = run("1x1x16x16", "conv:k=3,s=2", "convt:k=4,s=4", "adaptiveavg:o=5")
    assert r.stages[1].jump == (Fraction(1, 2), Fraction(1, 2))
    assert r.stages[1].rf == (3, 3)  # k == s: each output pixel comes from exactly one input pixel
    assert r.stages[1].to_dict()["jump"] == [0.5, 0.5]
    assert r.stages[2].formulas[0] == "H: 28 -> 5 (windows of 6..7)"


def test_magnitude_gap_adaptive_and_linear_on_4d() -> None:
    assert run("1x2x8x8", "magnitude").output == (1, 1, 8, 8)
    assert run("1x3x7x9", "gap").output == (1, 3, 1, 1)
    assert run("1x3x7x9", "adaptivemax:o=14x2").output == (1, 3, 14, 2)
    row = run("1x3x4x5", "linear:out=2").stages[0]
    assert row.out_shape == (1, 3, 4, 2) and row.params == 12 and row.macs == 12 * 12
    assert "acts on the last dimension" in row.notes[0]


@pytest.mark.parametrize(("stack", "fragment"), [
    (("conv:k=7",), "stage 1 'conv:k=7': kernel 7x7 is larger than the input 5x5 (H: 7 > 5; W: 7 > 5); "
                       "pad it (p=1, or p=same)"),
    (("relu", "conv:k=3,d=3"), "stage 2 'conv:k=3,d=3': kernel 3x3 dilated by d=3 (spans 7x7) is larger "
                                    "than the input 5x5"),
    (("conv:g=2",), "in channels 3 not divisible by groups g=2"),
    (("conv:out=4,g=3",), "out channels 4 not divisible by groups g=3"),
    (("conv:k=3,s=2,p=same",), "p=same is not supported for strided convolutions"),
    (("conv:p=5,pm=reflect",), "reflect padding 5 must be smaller than the input H = 5"),
    (("conv:k=1,p=6,pm=circular",), "circular padding 6 wraps around more than once"),
    (("convt:s=2,op=2",), "output_padding op=2x2 must be smaller than either stride s=2x2 or dilation d=1x1"),
    (("convt:k=1,p=3",), "output H = -1 is too small"),
    (("maxpool:k=3,p=2",), "padding 2 must be at most half the kernel size 3"),
    (("avgpool:k=7",), "output H = 0 is too small (< 1): kernel 7 does not fit the padded input 5"),
    (("flatten", "conv"), "stage 2 'conv': conv needs a 4-D (N, C, H, W) input but gets [1, 75]"),
    (("flatten", "bn"), "bn needs a 4-D"),
    (("flatten", "gap"), "gap needs a 4-D"),
    (("flatten", "magnitude"), "magnitude needs a 4-D"),
])
def test_refusals_name_stage_spec_and_reason(stack: tuple[str, ...], fragment: str) -> None:
    with pytest.raises(ShapeError) as info:
        run("1x3x5x5", *stack)
    assert fragment in str(info.value)
    assert info.value.exit_code == 1


def test_input_shape_is_validated() -> None:
    with pytest.raises(ShapeError, match="integer sizes"):
        infer((1, 3, 0, 4), [])
    with pytest.raises(ShapeError):
        infer((3, 4, 4), [])
    assert infer((1, 1, 4, 4), []).output == (1, 1, 4, 4)


# --- solver ----------------------------------------------------------------------------------------
def test_padding_solver_keeps_the_size() -> None:
    row = run("1x3x64x48", "conv:k=3,p=?").stages[0]
    assert row.out_shape == (1, 3, 64, 48) and row.solved == {"p": [1, 1]}
    assert row.resolved.params.padding == (1, 1)  # type: ignore[union-attr]
    assert {"p": 1, "out": 64} in row.options["H"]  # type: ignore[index]
    assert "p=? -> p=1" in row.notes
    row = run("1x3x64x64", "conv:k=7,s=2,p=?").stages[0]
    assert row.out_shape[2:] == (32, 32) and row.solved == {"p": [3, 3]}  # the ResNet stem
    row = run("1x1x64x64", "conv:k=3,d=2,p=?").stages[0]
    assert row.solved == {"p": [2, 2]}
    row = run("1x1x64x64", "maxpool:k=3,s=2,p=?").stages[0]
    assert row.out_shape[2:] == (32, 32) and row.solved == {"p": [1, 1]}


def test_padding_solver_with_target_and_refusal() -> None:
    row = run("1x1x30x30", "conv:k=3,p=?34x30").stages[0]
    assert row.solved == {"p": [3, 1]} and row.out_shape[2:] == (34, 30)
    with pytest.raises(ShapeError, match=r"no p gives H = 64 .*p=0 -> 63, p=1 -> 65.*p=same keeps the size"):
        run("1x1x64x64", "conv:k=2,p=?")
    with pytest.raises(ShapeError, match="no p gives H = 5; nearest"):
        run("1x1x8x8", "conv:k=3,s=1,p=?5")


def test_output_padding_solver_lists_valid_values() -> None:
    row = run("1x2x16x16", "convt:k=3,s=2,p=1,op=?").stages[0]
    assert row.out_shape[2:] == (32, 32) and row.solved == {"op": [1, 1]}
    assert "valid output_padding (op < s or op < d): H: [0, 1]; W: [0, 1]" in row.notes
    assert row.options == {"H": [{"op": 0, "out": 31}, {"op": 1, "out": 32}],
                           "W": [{"op": 0, "out": 31}, {"op": 1, "out": 32}]}
    row = run("1x2x16x16", "convt:k=4,s=2,p=?").stages[0]
    assert row.solved == {"p": [1, 1]} and row.out_shape[2:] == (32, 32)
    row = run("1x2x16x16", "convt:k=3,s=2,p=?,op=?").stages[0]
    assert row.solved == {"p": [0, 0], "op": [0, 0]} or row.out_shape[2:] == (32, 32)
    assert row.out_shape[2:] == (32, 32)
    assert row.resolved.params.output_padding != SOLVE  # type: ignore[union-attr]


def test_apply_target() -> None:
    stages = apply_target(parse_stages(["relu", "conv:k=3,s=2,p=?"]), (33, 33))
    assert infer((1, 1, 64, 64), stages).output == (1, 1, 33, 33)
    with pytest.raises(SpecError, match="exactly one stage"):
        apply_target(parse_stages(["conv"]), (3, 3))
    with pytest.raises(SpecError, match="found 2"):
        apply_target(parse_stages(["conv:p=?", "maxpool:k=2,p=?"]), (3, 3))


# --- named kernels (w=) ----------------------------------------------------------------------------
@pytest.fixture
def fake_kernels(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """A stand-in for featcli.kernels.conv_weight_shape (the agreed contract), recording its calls."""
    import featcli.kernels

    calls: list[tuple[object, ...]] = []

    def conv_weight_shape(refs, in_channels, mode, kernels_dir=None, **kw):  # type: ignore[no-untyped-def]
        calls.append((tuple(refs), in_channels, mode, kernels_dir))
        if "nope" in refs:
            raise KernelError("kernel 'nope' not found; known: sobel_x, sobel_y")
        n, k = len(refs), (5 if any(r.startswith("gaussian") for r in refs) else 3)
        if mode is KernelMode.GRAY:
            return n, 1, k, k, 1
        if mode is KernelMode.DEPTHWISE:
            return n * in_channels, 1, k, k, in_channels
        return n, in_channels, k, k, 1

    monkeypatch.setattr(featcli.kernels, "conv_weight_shape", conv_weight_shape)
    return calls


def test_kernels_fix_out_and_k(fake_kernels: list[tuple[object, ...]]) -> None:
    row = run("1x3x64x64", "conv:w=gaussian(size=5,sigma=1)+sobel_x,p=2").stages[0]
    assert row.out_shape == (1, 2, 64, 64) and row.params == 2 * 3 * 25
    assert row.config["w"] == ["gaussian(size=5,sigma=1)", "sobel_x"] and row.config["mode"] == "sum"
    assert fake_kernels[0] == (("gaussian(size=5,sigma=1)", "sobel_x"), 3, KernelMode.SUM, None)
    row = run("1x3x64x64", "conv:w=sobel_x+sobel_y,mode=depthwise").stages[0]
    assert row.out_shape == (1, 6, 62, 62) and row.config["g"] == 3 and row.params == 6 * 9
    row = run("1x3x64x64", "conv:w=sobel_x,mode=gray").stages[0]
    assert row.out_shape == (1, 1, 62, 62) and row.config["in"] == 1
    assert any("mode=gray: 3 channels -> 1" in n for n in row.notes)
    with pytest.raises(KernelError, match="stage 2 'conv:w=nope': kernel 'nope' not found"):
        run("1x3x64x64", "relu", "conv:w=nope")


def test_real_kernel_library() -> None:
    pytest.importorskip("featcli.kernels")
    assert list(run("1x3x64x64", "conv:w=sobel_x+sobel_y").output) == [1, 2, 62, 62]
    assert list(run("1x3x64x64", "conv:w=sobel_x+sobel_y,mode=depthwise").output) == [1, 6, 62, 62]
    assert list(run("1x3x64x64", "conv:w=sobel_x+sobel_y,mode=gray,p=1", "magnitude").output) == \
        [1, 1, 64, 64]
    assert list(run("1x3x64x64", "conv:w=gaussian(size=7,sigma=1.5)+sobel_x,p=same").output) == [1, 2, 64, 64]
    assert list(run("1x1x8x8", "conv:w=[[1,0,-1],[2,0,-2],[1,0,-1]]").output) == [1, 1, 6, 6]
    with pytest.raises(KernelError, match="stage 1 'conv:w=sobel_q'"):
        run("1x3x8x8", "conv:w=sobel_q")


# --- image inputs and import hygiene ---------------------------------------------------------------
def test_image_input_uses_the_header_and_loading_options() -> None:
    pytest.importorskip("featcli.io.images")
    from featcli.cli.options import load_options

    assert resolve_input(str(SAMPLE)) == ((1, 3, 240, 320), str(SAMPLE))
    opts = load_options(channels=Channels.GRAY, max_side=100)
    assert resolve_input(str(SAMPLE), opts) == ((1, 1, 75, 100), str(SAMPLE))
    assert resolve_input("2x3x4x5") == ((2, 3, 4, 5), None)
    with pytest.raises(ImageLoadError, match="no such file"):
        resolve_input(str(ROOT / "missing.png"))
    with pytest.raises(SpecError):
        resolve_input("1x3x4x5x6")


def test_shape_path_imports_neither_torch_nor_numpy() -> None:
    stack = ["conv:k=3,p=?", "maxpool:k=2", "flatten", "linear:out=2"]
    code = ("import sys, featcli.stages.spec, featcli.shape.infer, featcli.cli; "
            "from featcli.shape.infer import infer; from featcli.stages.spec import parse_stages; "
            f"infer((1, 3, 64, 64), parse_stages({stack!r})); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


@pytest.mark.parametrize("text", ["1x3x224x224", "3x640x480", "7x9", "0x3x8x8", "1x3x8x0", "2147483647x1",
                                  "2147483648x1", "00000000001x5", "1x3x8", "1x", "x1", "1x3x8x8x8", "1X3X8X8",
                                  "1x²x3", "1x3x8x8 ", "１x3"])
def test_input_shape_fast_spelling_agrees_with_the_general_parser(text: str) -> None:
    """parse_input_shape's shortcut for plain NxCxHxW digits answers (or refuses) as its general path does."""
    from featcli.errors import SpecError
    from featcli.stages import grammar

    def general(t: str) -> object:  # the same text, spelled so the shortcut does not apply
        try:
            return grammar.parse_input_shape.__wrapped__(f"[{t.replace('x', ',')}]")
        except SpecError as exc:
            return type(exc)

    try:
        got: object = grammar.parse_input_shape.__wrapped__(text)
    except SpecError as exc:
        got = type(exc)
    if "x" in text and text.strip() == text and text.lower() == text and text.count("x") <= 3:
        assert got == general(text)
    else:
        assert got == general(text) or got is SpecError


def test_activations_count_no_macs_prelu_included() -> None:
    """docs/shape.md: activations count 0 MACs (fvcore's convention); prelu's slopes are parameters only."""
    from featcli.shape.service import InputResolver, query

    for stage in ("relu", "prelu", "prelu:n=1", "leakyrelu", "sigmoid"):
        report = query(InputResolver(), "1x4x8x8", [stage])
        assert report.macs == 0, stage
    assert query(InputResolver(), "1x4x8x8", ["prelu"]).params == 4
