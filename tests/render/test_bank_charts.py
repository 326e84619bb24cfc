"""The filter bank, training curves and confusion matrix pictures: sizes, colours where the values say."""

from __future__ import annotations

import numpy as np
import pytest

from featcli.render.bank import MAX_OUT, MAX_SIZE, filter_bank, plan_bank, value_texts
from featcli.render.charts import TRAIN, VAL, confusion, confusion_layout, training_curves
from featcli.render.figure import LEVELS, WHITE, diverging_index, diverging_table


def _px(image, x: float, y: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(image)[int(y), int(x)].astype(int)


def _lay(w: np.ndarray, ins: list[str] | None = None):  # type: ignore[no-untyped-def]
    o, i = w.shape[:2]
    return plan_bank(w.shape, [str(k + 1) for k in range(min(o, MAX_OUT))], ins or [str(k + 1) for k in range(i)])


def test_tile_colours_follow_the_weight_signs_on_one_symmetric_scale() -> None:
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 0.0, 1.0], size=(6, 3))
    signs[0, 0], signs[0, 1] = 1.0, -1.0
    w = np.repeat(np.repeat(signs[:, :, None, None], 5, 2), 5, 3) * 0.5
    w[0, 0, 0, 0] = 2.0  # the bank's largest |w|: every tile is on -2 .. 2
    image = filter_bank(w, title="t", in_labels=["R", "G", "B"])
    lay = _lay(w, ["R", "G", "B"])
    assert image.mode == "RGB" and image.size == (lay.width, lay.height)
    table = diverging_table()
    cell = lay.tile[0] // 5
    for (o, i), sign in np.ndenumerate(signs):
        x0, y0, _, _ = lay.tile_box(o, i)
        px = _px(image, x0 + cell + 2, y0 + cell + 2)  # a corner of cell (1, 1): away from its printed value
        assert px.tolist() == table[diverging_index(np.array(0.5 * sign), 2.0)].tolist()
        if sign > 0:
            assert px[0] > px[2] + 40
        elif sign < 0:
            assert px[2] > px[0] + 40
        else:
            assert min(px) > 235
    # symmetric: +0.5 and -0.5 get mirror colours of the one table, around its centre
    up = _px(image, *np.add(lay.tile_box(0, 0)[:2], cell + 2))
    down = _px(image, *np.add(lay.tile_box(0, 1)[:2], cell + 2))
    j = int(diverging_index(np.array(-0.5), 2.0))
    assert down.tolist() == table[j].tolist() and up.tolist() == table[LEVELS - 1 - j].tolist()


def test_values_are_printed_in_small_kernels_and_not_in_crowded_banks() -> None:
    sobel = np.array([[[[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]]])
    image = filter_bank(sobel, title="sobel")
    lay = _lay(sobel)
    x0, y0, x1, y1 = lay.tile_box(0, 0)
    c = (x1 - x0) // 3
    centre = np.asarray(image)[y0 + c + 4 : y0 + 2 * c - 4, x0 + 2 * c + 4 : x1 - 4].reshape(-1, 3)
    assert len({tuple(p) for p in centre}) > 3  # the "2" drawn over the cell's colour
    assert value_texts(sobel, 2.0)[0, 0].tolist() == [["-1", "0", "1"], ["-2", "0", "2"], ["-1", "0", "1"]]
    big = np.random.default_rng(1).normal(size=(64, 3, 7, 7))
    image = filter_bank(big, title="resnet conv1")
    lay = _lay(big)
    assert lay.outs == 64 and lay.blocks > 1  # wrapped into side-by-side blocks
    assert image.size[0] <= MAX_SIZE[0] and image.size[1] <= MAX_SIZE[1]
    x0, y0, x1, _ = lay.tile_box(63, 2)
    c = (x1 - x0) // 7
    cell = np.asarray(image)[y0 + 1 : y0 + c - 1, x0 + 1 : x0 + c - 1].reshape(-1, 3)
    assert len({tuple(p) for p in cell}) == 1  # too small for text: one colour


def test_large_banks_stay_within_the_size_limit() -> None:
    for shape in [(1, 1, 3, 3), (100, 64, 3, 3), (16, 300, 5, 5), (2, 2, 63, 63)]:
        image = filter_bank(np.ones(shape), title="x")
        assert 0 < image.size[0] <= MAX_SIZE[0] and 0 < image.size[1] <= MAX_SIZE[1], shape
    with pytest.raises(ValueError, match="O, I, kh, kw"):
        filter_bank(np.ones((3, 3, 3)), title="x")


def _near(image, rgb: tuple[int, int, int], tol: int = 25) -> int:  # type: ignore[no-untyped-def]
    a = np.asarray(image).astype(int)
    return int((np.abs(a - np.array(rgb)).max(axis=2) <= tol).sum())


def test_training_curves_draw_train_and_validation_lines() -> None:
    history = [{"epoch": e, "train_loss": 2 / e, "train_acc": 1 - 0.5 / e, "val_loss": 2.2 / e,
                "val_acc": 1 - 0.6 / e} for e in range(1, 11)]
    image = training_curves(history)
    assert image.mode == "RGB" and 800 <= image.size[0] <= 2000 and 300 <= image.size[1] <= 1000
    assert _near(image, TRAIN) > 200 and _near(image, VAL) > 200
    without = training_curves([{k: v for k, v in r.items() if not k.startswith("val")} for r in history])
    assert _near(without, TRAIN) > 200 and _near(without, VAL) < 5
    # the left panel holds the loss: its falling line starts high on the left and ends low on the right
    a = np.asarray(image).astype(int)
    half = a[:, : a.shape[1] // 2]
    ys, xs = np.nonzero(np.abs(half - np.array(TRAIN)).max(axis=2) <= 25)
    assert ys[xs < np.percentile(xs, 10)].mean() < ys[xs > np.percentile(xs, 90)].mean()


def test_confusion_shades_right_blue_and_mistakes_red_with_counts() -> None:
    m = np.array([[50, 2, 0], [1, 45, 4], [0, 3, 47]])
    image = confusion(m, ["vertical", "horizontal", "diagonal"], title="orientation")
    left, top, cell, _, _ = confusion_layout(["vertical", "horizontal", "diagonal"])
    assert image.mode == "RGB"
    for (i, j), v in np.ndenumerate(m):
        x, y = left + j * cell, top + i * cell
        corner = _px(image, x + 3, y + 3)
        block = np.asarray(image)[y + 3 : y + cell - 3, x + 3 : x + cell - 3].reshape(-1, 3)
        if v == 0:
            assert corner.tolist() == list(WHITE) and len({tuple(p) for p in block}) == 1
            continue
        assert (corner[2] > corner[0] + 40) if i == j else (corner[0] > corner[2] + 10), (i, j, corner)
        assert len({tuple(p) for p in block}) > 3  # the count is written in the cell
    # shading is per row: 4 of row 1's 50 images is darker than 2 of row 0's 52
    assert _px(image, left + 2 * cell + 3, top + cell + 3).sum() < _px(image, left + cell + 3, top + 3).sum()
    ten = confusion(np.eye(10, dtype=int) * 30, [str(k) for k in range(10)], title="digits")
    assert ten.size[0] <= 1200 and ten.size[1] <= 1200
    with pytest.raises(ValueError, match="K, K"):
        confusion(np.ones((2, 3), int), ["a", "b"], title="x")
