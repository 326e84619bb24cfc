"""featcli explain on hostile input (issue #23): the drawn grid is bounded before anything is drawn, numbers
that overflow are refused, --delay and --input are bounded, --rf and --at check their planes first."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from featcli.errors import BudgetError, UsageError
from featcli.explain.geometry import MAX_GRID, sweep
from featcli.explain.numbers import parse_input, walk
from featcli.explain.service import MAX_DELAY_MS, explain_stage
from featcli.stages.spec import parse_stage


@pytest.mark.parametrize("spec, shape, grid", [
    ("conv:k=3,p=40", (1, 1, 5, 5), "85x85"),  # the padded input
    ("conv:k=3,p=100000", (1, 1, 5, 5), "200005x200005"),
    ("convt:k=3,s=30", (1, 1, 5, 5), "125x125"),  # the zero-inserted grid
    ("convt:k=3,s=1000", (1, 1, 5, 5), "4005x4005"),
    ("maxpool:k=3,s=1,p=1", (1, 1, 64, 80), "66x82"),
])
def test_the_drawn_grid_is_checked_before_it_is_built(spec: str, shape: tuple[int, int, int, int],
                                                      grid: str) -> None:
    t0 = time.process_time()
    with pytest.raises(UsageError, match=f"at most {MAX_GRID}x{MAX_GRID} cells; '.*' draws a {grid} grid"):
        sweep(parse_stage(spec), shape)
    assert time.process_time() - t0 < 0.5


def test_grids_within_the_limit_are_drawn() -> None:
    assert sweep(parse_stage("conv:k=3,p=8"), (1, 1, 64, 64)).grid == (80, 80)
    assert sweep(parse_stage("convt:k=3,s=2"), (1, 1, 37, 37)).grid == (77, 77)


@pytest.mark.parametrize("spec, matrix", [
    ("avgpool:k=2", "[[1e308,1e308],[1e308,1e308]]"),
    ("conv:w=[[1,1],[1,1]]", "[[1e308,1e308],[1e308,1e308]]"),
    ("conv:w=[[1e308,1],[1,1]]", "[[1e308,1],[1,1]]"),
    ("conv:w=[[1e308,-1e308]]", "[[1e308,1e308]]"),  # inf - inf: nan
])
def test_results_that_overflow_are_refused(spec: str, matrix: str) -> None:
    with pytest.raises(UsageError, match=r"output \(0, 0\) overflows to (inf|nan)"):
        explain_stage(spec, matrix, None)


def test_finite_extremes_still_work() -> None:
    lines, _ = explain_stage("maxpool:k=2", "[[1e308,1],[1,-1e308]]", None)
    assert lines[-1] == "output: [[1e+308]]"


@pytest.mark.parametrize("text, match", [
    ("[" * 10_000 + "]" * 10_000, "brackets nest 10000 deep"),
    ("[[1" + "0" * 400 + ",1]]", "every value must be a finite number"),
    ("9" * 5000 + "x5", "at most 64x64 cells"),
    ("[[1,2],[3]" + ",[4,5,6]" * 20_000 + "]", "rows of different lengths"),
])
def test_hostile_inputs_are_one_short_usage_error(text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match) as info:
        parse_input(text)
    assert len(str(info.value)) < 300


def test_delay_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=f"--delay '1000000000000': expected milliseconds from 50 to {MAX_DELAY_MS}"):
        explain_stage("conv:k=3", "5x5", str(tmp_path / "a.gif"), delay=10**12)
    assert not (tmp_path / "a.gif").exists()


def test_walk_refuses_before_formatting_an_infinite_sum() -> None:
    inp = parse_input("[[1e308,1e308]]")
    sw = sweep(parse_stage("avgpool:k=1x2"), inp.shape)
    with pytest.raises(UsageError):
        walk(sw, inp.values, None, inp.integers)  # type: ignore[arg-type]


@pytest.fixture()
def small(tmp_path: Path) -> str:
    path = tmp_path / "small.png"
    Image.new("RGB", (8, 8), (100, 50, 20)).save(path)
    return str(path)


def test_rf_through_hundreds_of_convs_is_refused_when_its_counts_overflow(small: str) -> None:
    from featcli.explain.field import explain_field

    with pytest.raises(UsageError, match=r"path counts pass 1.8e308 at stage \d+"):
        explain_field(small, "small", ["conv:k=3,p=1"] * 400, (1, 1), None)
    lines = explain_field(small, "small", ["conv:k=3,p=1"] * 100, (1, 1), None)
    assert "paths to each input pixel" in lines[-1]


@pytest.mark.parametrize("specs, match", [(["conv:k=3,p=100000"], "pads its input to 200008x200008"),
                                          (["conv:k=11,p=1000"] * 2, "following every path takes 2,4"),
                                          ])
def test_rf_planes_are_checked_before_they_are_allocated(small: str, specs: list[str], match: str) -> None:
    from featcli.explain.field import explain_field

    t0 = time.process_time()
    with pytest.raises(UsageError, match=match):
        explain_field(small, "small", specs, (0, 0), None)
    assert time.process_time() - t0 < 1


def test_rf_picture_of_a_huge_field_is_refused(small: str, tmp_path: Path) -> None:
    from featcli.explain.field import MAX_DRAWN_FIELD, explain_field

    with pytest.raises(UsageError, match=f"up to {MAX_DRAWN_FIELD}x{MAX_DRAWN_FIELD} cells, this one is 601x601"):
        explain_field(small, "small", ["conv:k=3,p=1"] * 300, (0, 0), str(tmp_path / "rf.png"))


def test_at_checks_the_padded_image_against_the_budget(small: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from featcli.engine import plan
    from featcli.explain.cell import explain_cell

    monkeypatch.setattr(plan, "available_memory", lambda: 2 * 2**30)
    with pytest.raises(BudgetError, match="padded by 20000,20000,20000,20000 is 40008x40008"):
        explain_cell(small, "small", ["conv:k=3,p=20000"], (0, 0), 0, None)
