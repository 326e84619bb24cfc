"""The ops of issue #25 (upsample, gelu, silu, hardswish, hardsigmoid, groupnorm, layernorm, mul) against torch.

For each op over a sweep of sizes and keys: the predicted shape is torch's (or both refuse), the torch
backend's values are torch's functional call's, the NumPy backend's equal them to float32 rounding, and the
module ``featcli shape --code`` writes computes the same. A squeeze-excitation block (``save``, ``gap``, two 1x1
convs, ``hardsigmoid``, ``mul``) runs through the run's loop with every shape predicted, and trained norms
keep their ``state_dict`` names between the trainable network and the ``--code`` module.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from featcli.engine.network import Network  # noqa: E402
from featcli.engine.numpy_backend import NumpyBackend  # noqa: E402
from featcli.engine.plan import Planner, PlanOptions  # noqa: E402
from featcli.engine.torch_backend import TorchBackend  # noqa: E402
from featcli.errors import ShapeError  # noqa: E402
from featcli.run.config import RunConfig  # noqa: E402
from featcli.run.image import Runner  # noqa: E402
from featcli.shape.code import module_code  # noqa: E402
from featcli.stages.build import build_stack  # noqa: E402
from featcli.stages.spec import parse_stages  # noqa: E402

Ref = Callable[[Any], Any]


def _interp(**kw: Any) -> Ref:
    return lambda x: F.interpolate(x, **kw)


def _upsample_cases() -> list[tuple[str, Ref]]:
    cases: list[tuple[str, Ref]] = []
    for sf in ("2", "0.5", "1.7", "0.3", "2.5x0.75", "1.1"):
        f = tuple(float(v) for v in sf.split("x")) if "x" in sf else float(sf)
        for rsf in (None, True, False):
            tail = "" if rsf is None else f",rsf={int(rsf)}"
            cases.append((f"upsample:sf={sf}{tail}", _interp(scale_factor=f, recompute_scale_factor=rsf)))
            for ac in (None, True):
                keys = "" if ac is None else f",ac={int(ac)}"
                cases.append((f"upsample:sf={sf},mode=bilinear{keys}{tail}",
                              _interp(scale_factor=f, mode="bilinear", align_corners=ac, recompute_scale_factor=rsf)))
    for o in ((3, 3), (11, 4), (1, 9)):
        cases.append((f"upsample:o={o[0]}x{o[1]}", _interp(size=o)))
        cases.append((f"upsample:o={o[0]}x{o[1]},mode=bilinear,ac=1",
                      _interp(size=o, mode="bilinear", align_corners=True)))
        cases.append((f"size={o[0]}x{o[1]}".join(("upsample:", ",mode=bilinear")), _interp(size=o, mode="bilinear")))
    return cases


def _layer_norm(x: Any, eps: float = 1e-5) -> Any:
    return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), eps=eps).permute(0, 3, 1, 2)


CASES: list[tuple[str, Ref]] = [
    ("gelu", F.gelu), ("gelu:approx=tanh", lambda x: F.gelu(x, approximate="tanh")), ("silu", F.silu),
    ("hardswish", F.hardswish), ("hardsigmoid", F.hardsigmoid), ("relu6", F.relu6),
    ("groupnorm:g=2", lambda x: F.group_norm(x, 2)),
    ("groupnorm:groups=4,eps=0.01", lambda x: F.group_norm(x, 4, eps=0.01)),
    ("groupnorm:g=1", lambda x: F.group_norm(x, 1)),
    ("layernorm", _layer_norm), ("layernorm:eps=1e-6", lambda x: _layer_norm(x, 1e-6)),
    *_upsample_cases(),
]
SIZES = ((1, 1), (5, 7), (13, 4))


@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(("spec", "ref"), CASES, ids=[c[0] for c in CASES])
def test_op_equals_torch_on_every_backend(spec: str, ref: Ref, hw: tuple[int, int]) -> None:
    x = torch.randn(1, 4, *hw, generator=torch.Generator().manual_seed(hash(spec) % 1000)) * 3
    try:
        want = ref(x)
    except (RuntimeError, ValueError):  # torch refuses: so must the shape engine
        with pytest.raises(ShapeError):
            Planner(parse_stages([spec]), PlanOptions()).plan_for(tuple(x.shape))
        return
    plan = Planner(parse_stages([spec]), PlanOptions()).plan_for(tuple(x.shape))
    (stage,) = plan.stages
    assert stage.row.out_shape == tuple(want.shape)
    with torch.no_grad():
        torch.testing.assert_close(TorchBackend().compile(stage)(x), want, rtol=1e-6, atol=1e-6)
        scope: dict[str, Any] = {}
        exec(module_code(plan.report, spec), scope)  # noqa: S102 - featcli's own generated code
        torch.testing.assert_close(scope["Net"]()(x), want, rtol=1e-6, atol=1e-6)
    got = NumpyBackend().compile(stage)(x.numpy())
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=2e-5)


SE = ["conv:out=8,k=3,p=1", "save:x", "gap", "conv:out=2,k=1", "relu", "conv:out=8,k=1", "hardsigmoid", "mul:x"]


def test_a_squeeze_excitation_block_runs_with_every_shape_predicted(small_photo: Path, tmp_path: Path) -> None:
    cfg = RunConfig(stack=tuple(build_stack(SE)), output=str(tmp_path / "o.png"))
    results = Runner(cfg).process(str(small_photo)).results
    assert [r.predicted for r in results][-3:] == [(1, 8, 1, 1), (1, 8, 1, 1), (1, 8, 41, 57)]
    assert all(r.ok for r in results)
    # the gate is in (0, 1): the product keeps each value's sign and shrinks it
    conv, out = results[0], results[-1]
    assert conv.min <= out.min <= 0 <= out.max <= conv.max


def test_mul_broadcasts_as_torch_and_refuses_what_does_not_meet() -> None:
    plan = Planner(parse_stages(["save:a", "gap", "mul:a"]), PlanOptions()).plan_for((1, 3, 5, 6))
    assert plan.report.output == (1, 3, 5, 6)
    assert plan.report.stages[-1].formulas == ("1x3x1x1 * 1x3x5x6 = 1x3x5x6",)
    with pytest.raises(ShapeError, match="shapes that broadcast"):
        Planner(parse_stages(["save:a", "maxpool:k=2", "mul:a"]), PlanOptions()).plan_for((1, 3, 6, 6))


@pytest.mark.parametrize("stack", [["conv:out=4,k=1", "groupnorm:g=2", "layernorm", "save:a",
                                    "mul:a(gap conv:out=4,k=1 sigmoid)", "upsample:sf=2,mode=bilinear", "silu"]])
def test_trained_norms_and_side_branches_are_the_code_modules(stack: list[str]) -> None:
    plan = Planner(parse_stages(stack), PlanOptions(seed=3)).plan_for((1, 3, 6, 5))
    net = Network(plan)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    scope: dict[str, Any] = {}
    exec(module_code(plan.report, " ".join(stack)), scope)  # noqa: S102 - featcli's own generated code
    ref = scope["Net"]()
    ref.load_state_dict(net.state_dict())  # the same names: s2.weight, s3.weight, ...
    assert {k.split(".")[0] for k in net.state_dict()} >= {"s2", "s3"}
    x = torch.randn(2, 3, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), ref.eval()(x))
        assert tuple(ref(x).shape[1:]) == plan.report.output[1:]


def test_upsample_keys_refused_as_torch_refuses_them() -> None:
    from featcli.errors import SpecError

    for bad, why in [("upsample", "exactly one of sf= .* and o="), ("upsample:sf=2,o=4", "exactly one"),
                     ("upsample:sf=2,ac=1", "bilinear only"), ("upsample:o=4,rsf=1", "sf= only"),
                     ("upsample:sf=0", "positive"), ("upsample:sf=2x3x4", "expected F or HxW"),
                     ("gelu:approx=fast", "expected one of none, tanh"), ("groupnorm", "needs g=")]:
        with pytest.raises(SpecError, match=why):
            parse_stages([bad])
    assert list(itertools.chain(*(c.formulas for c in Planner(parse_stages(["upsample:sf=1.5"]), PlanOptions())
                                  .plan_for((1, 1, 5, 4)).report.stages))) == ["H: floor(5 * 1.5) = 7",
                                                                               "W: floor(4 * 1.5) = 6"]


@pytest.mark.parametrize("spec", ["gelu", "gelu:approx=tanh", "silu", "hardswish", "hardsigmoid", "relu6"])
def test_activations_far_out_equal_torch_without_warnings(spec: str) -> None:
    x = torch.tensor([-1e30, -1e10, -100.0, -30.0, -3.0, -0.0, 0.0, 1e-30, 3.0, 30.0, 100.0, 1e10, 1e30])
    x = x.view(1, 1, 1, -1)
    (stage,) = Planner(parse_stages([spec]), PlanOptions()).plan_for(tuple(x.shape)).stages
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warning from NumPy
        got = NumpyBackend().compile(stage)(x.numpy())
    np.testing.assert_allclose(got, TorchBackend().compile(stage)(x).numpy(), rtol=1e-6, atol=1e-6)
