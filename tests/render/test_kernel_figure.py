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
    fig = kfig.kernel_figure(ks)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 3 * kfig.MAX_ROWS and titles[0] == "k0 1x2, sum -1"
    assert fig.get_suptitle() == "first 8 of 10 kernels"


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
