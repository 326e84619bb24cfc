"""The pictures of featcli explain read on a slide: captions inside the frame, legend colours with one meaning,
and plural words that agree with their numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from featcli.cli import app
from featcli.explain.frames import Drawer, Movie, _about
from featcli.explain.geometry import sweep
from featcli.explain.service import channels
from featcli.stages.spec import parse_stage

GROUPS = "conv:out=8,k=3,g=4"


def _last_frame(runner, tmp_path: Path) -> np.ndarray:  # type: ignore[no-untyped-def]
    out = tmp_path / "groups.png"
    res = runner.invoke(app, ["explain", GROUPS, "--input", "8x5x5", "-o", str(out)])
    assert res.exit_code == 0, res.output
    im = Image.open(out)
    im.seek(im.n_frames - 1)
    return np.asarray(im.convert("RGB"))


def _drawer() -> Drawer:
    sw = sweep(parse_stage(GROUPS), (1, 8, 5, 5))
    return Drawer(Movie(sw, None, (), None, True, f"{GROUPS}  on  5x5", channels(sw)))


def test_groups_caption_stays_inside_the_picture(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    px = _last_frame(runner, tmp_path)
    dr = _drawer()
    margin = px[:, dr.width - dr.pad + 4:]  # the right margin: nothing drawn there, no text running off
    assert (margin == px[0, 0]).all()


def test_group_boxes_use_no_legend_colour(runner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    px = _last_frame(runner, tmp_path)
    dr = _drawer()
    below = px[dr.y_channels:].reshape(-1, 3)
    seen = {tuple(int(v) for v in c) for c in np.unique(below, axis=0)}
    for colour, name in dr.legend_items:
        assert tuple(colour) not in seen, f"the groups reuse the legend's colour of {name!r}"
    assert {dr.group_fill(0), dr.group_fill(1)} <= seen and dr.group_fill(0) != dr.group_fill(1)


def test_convt_caption_counts_its_zeros() -> None:
    one = _about(sweep(parse_stage("convt:k=3,s=2,p=1"), (1, 1, 3, 3)))
    assert "1 zero between inputs" in one and "1 zeros" not in one
    two = _about(sweep(parse_stage("convt:k=3,s=3"), (1, 1, 3, 3)))
    assert "2 zeros between inputs" in two
