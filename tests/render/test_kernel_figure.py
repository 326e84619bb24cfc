"""The kernel figure's responses are featcli's cross-correlation, padded as conv2d / cv2.filter2D pad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from featcli.errors import OutputError
from featcli.kernels import Kernel
from featcli.render import kernel_figure as kfig


def test_response_exact_on_a_step() -> None:
    k = Kernel("d", ((-1.0, 0.0, 2.0),))
    step = np.array([[0, 0, 1, 1, 1]], np.float32)
    assert kfig.kernel_response(k, step, "edge").tolist() == [[0.0, 2.0, 2.0, 1.0, 1.0]]
    assert kfig.kernel_response(k, step, "constant").tolist() == [[0.0, 2.0, 2.0, 1.0, -1.0]]


@pytest.mark.parametrize("shape", [(3, 3), (2, 3), (4, 2), (5, 1)])
@pytest.mark.parametrize("border", ["edge", "constant"])
def test_response_matches_cv2_filter2d(shape: tuple[int, int], border: str) -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(sum(shape))
    weights = rng.integers(-3, 4, shape).astype(np.float32)
    plane = rng.random((11, 13), dtype=np.float32)
    k = Kernel("k", tuple(tuple(float(v) for v in row) for row in weights))
    how = cv2.BORDER_REPLICATE if border == "edge" else cv2.BORDER_CONSTANT
    expect = cv2.filter2D(plane, -1, weights, borderType=how)
    got = kfig.kernel_response(k, plane, border)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)


def test_response_uses_the_one_correlation(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def spy(plane: np.ndarray, weights: object, out: np.ndarray) -> None:
        calls.append((plane.shape, weights, out.shape))
        out.fill(0)

    monkeypatch.setattr(kfig, "correlate", spy)
    k = Kernel("k", ((1.0, 2.0), (3.0, 4.0)))
    kfig.kernel_response(k, np.ones((5, 6)), "constant")
    assert calls == [((6, 7), k.weights, (5, 6))]


def test_figure_rows_and_title() -> None:
    ks = [Kernel(f"k{i}", ((float(i), -1.0),)) for i in range(10)]
    one = kfig.kernel_figure(ks[:1])
    eight = kfig.kernel_figure(ks)
    assert eight.mode == "RGB" and eight.width == one.width
    title = round(kfig.FS_TITLE * 1.4)  # "first 8 of 10 kernels" above the rows
    assert eight.height == title + kfig.MAX_ROWS * (one.height - kfig.PAD) + kfig.PAD


def test_figure_is_the_house_style_with_slide_readable_numbers() -> None:
    """Pillow and the filter banks' diverging colours (not matplotlib's), numbers of 14 px or more."""
    from featcli.render.figure import LEVELS, diverging_table

    for n in (1, 3, 5, 7, 9):
        cell, fs = kfig.weight_cells((n, n))
        assert fs >= kfig.MIN_FS and cell >= kfig.MIN_CELL
    assert kfig.weight_cells((11, 11))[1] == 0  # too many to print: colours only
    k = Kernel("d", ((-1.0, 0.0, 1.0),) * 3)
    px = np.asarray(kfig.kernel_figure([k]))
    cell, _ = kfig.weight_cells(k.shape)
    top = kfig.PAD + round(kfig.FS * 1.4) + round(kfig.FS_SMALL * 1.4) + 6
    x0 = kfig.PAD
    table = diverging_table()
    assert tuple(px[top + 3, x0 + 3]) == tuple(table[0])  # -1: the bottom of the symmetric scale
    assert tuple(px[top + 3, x0 + cell + 3]) == tuple(table[LEVELS // 2])  # 0: its centre
    assert tuple(px[top + 3, x0 + 2 * cell + 3]) == tuple(table[-1])
    middle = px[top + cell // 2 - 12: top + cell // 2 + 12, x0 + cell // 2 - 14: x0 + cell // 2 + 14]
    inked = (middle.astype(int).sum(axis=2) < 200).sum(axis=0)  # the digits' dark columns
    assert (inked > 0).sum() >= 6  # a "0" of slide size, not a few pixels


def test_write_refuses_other_names_and_existing_files(tmp_path: Path) -> None:
    k = [Kernel("k", ((1.0,),))]
    with pytest.raises(OutputError, match=r"expected a \.png file name, got '\.jpg'"):
        kfig.write_kernel_figure(k, tmp_path / "k.jpg")
    out = kfig.write_kernel_figure(k, tmp_path / "k.png")
    assert out.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(OutputError, match="already exists"):
        kfig.write_kernel_figure(k, out)
    with pytest.raises(OutputError, match="input"):
        kfig.write_kernel_figure(k, out, force=True, inputs=[str(out)])
    assert not list(tmp_path.glob(".*.part"))
