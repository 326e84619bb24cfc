"""The memory budget (refusals before anything is allocated) and empty stages in the loop."""

from __future__ import annotations

import math

import pytest

from featcli.engine.plan import Planner, PlanOptions, memory_budget
from featcli.errors import BudgetError
from featcli.shape.memory import human_bytes, parse_bytes
from featcli.stages.spec import parse_stages

GIB = 2**30


def _plan(texts: list[str], budget: int | None, shape=(1, 3, 240, 320)):  # type: ignore[no-untyped-def]
    return Planner(parse_stages(texts), PlanOptions(max_bytes=budget)).plan_for(shape)


def test_weights_over_the_budget_are_refused_when_planning() -> None:
    with pytest.raises(BudgetError, match=r"stage 2 'linear:out=20000': weights of 4,608,020,000 parameters "
                                          r"\(float32\) need 17.2 GiB, over the memory budget of 3.0 GiB"):
        _plan(["flatten", "linear:out=20000"], 3 * GIB)


def test_outputs_over_the_budget_are_refused_when_planning_unless_they_may_stream() -> None:
    with pytest.raises(BudgetError, match=r"stage 1 'conv:out=20000': output 1x20000x238x318 float32 needs "
                                          r"5.6 GiB, over the memory budget of 3.1 GiB \(--max-memory\)"):
        _plan(["conv:out=20000", "maxpool:k=2"], int(3.1 * GIB))
    plan = _plan(["conv:out=20000", "relu"], int(3.1 * GIB))  # conv + pointwise: the loop decides
    with pytest.raises(BudgetError, match="output 2x20000x238x318"):
        plan.check_outputs(2)


def test_no_limit_and_the_default() -> None:
    _plan(["flatten", "linear:out=20000"], 0)  # 0: no limit (nothing is allocated by planning)
    assert memory_budget(0) == 0 and memory_budget(123) == 123
    assert 0 < memory_budget() < 2**62


@pytest.mark.parametrize(("text", "n"), [("512M", 512 * 2**20), ("4G", 4 * GIB), ("0", 0), ("1.5GiB", 3 * GIB // 2),
                                         ("65536", 65536), ("2k", 2048)])
def test_parse_bytes(text: str, n: int) -> None:
    assert parse_bytes(text) == n


def test_human_bytes() -> None:
    assert [human_bytes(n) for n in (10, 2048, 5 * GIB + GIB // 2)] == ["10 B", "2.0 KiB", "5.5 GiB"]


def test_an_empty_stage_runs_and_says_so() -> None:
    torch = pytest.importorskip("torch")
    from featcli.engine.loop import compile_stages, execute
    from featcli.engine.torch_backend import TorchBackend

    plan = _plan(["avgpool:k=3", "gap", "convt:out=8,k=2,s=2,p=1", "relu", "flatten", "linear:out=3"], None,
                 (1, 1, 32, 32))
    backend = TorchBackend()
    (results,) = execute(torch.rand(1, 1, 32, 32), plan, backend, compile_stages(plan, backend))
    empty = [r for r in results if r.empty]
    assert [r.index for r in empty] == [3, 4, 5]
    assert all(r.ok and (r.min, r.max, r.mean, r.zeros) == (0.0, 0.0, 0.0, 0.0) for r in empty)
    assert all(r.record()["empty"] for r in empty) and not results[-1].empty
    assert results[2].actual == (1, 8, 0, 0) and all(math.isfinite(r.mean) for r in results)


def test_a_stack_that_may_stream_is_refused_when_even_one_row_of_it_cannot_fit() -> None:
    # issue #23: conv:out=100000000 passed planning (it "may stream") and built 10.4 GiB of weights first
    with pytest.raises(BudgetError, match=r"stage 1 'conv:out=100000000,k=3': output 1x100000000x238x318 float32; "
                                          r"even streamed in bands, one row of each stage needs 118.5 GiB, over the "
                                          r"memory budget of 12.0 GiB"):
        _plan(["conv:out=100000000,k=3"], 12 * GIB)


def test_the_weights_of_the_whole_stack_count_together() -> None:
    # each linear is 1.0 GiB (under the budget); both are built before the first image runs
    with pytest.raises(BudgetError, match=r"the stack's weights, 536,903,680 parameters \(float32\), need 2.0 GiB "
                                          r"together, over the memory budget of 1.5 GiB"):
        _plan(["flatten", "linear:out=16384", "linear:out=16384"], 3 * GIB // 2, (1, 1, 128, 128))


def test_the_budget_is_checked_before_any_weight_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    from featcli.engine import plan as plan_module

    def no_kernels(*args: object, **kwargs: object) -> None:
        raise AssertionError("weights were resolved before the budget check")

    monkeypatch.setattr(plan_module, "_conv_kernels", no_kernels)
    with pytest.raises(BudgetError, match="stage 3 'linear:out=20000'"):
        _plan(["conv:w=sobel_x", "flatten", "linear:out=20000"], GIB)
