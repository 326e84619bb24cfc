"""Start-up: a plain ``featcli run`` imports only what it uses (docs/benchmarks.md, "Where the time goes").

The modules below are imported inside the functions that need them; each costs the run path
milliseconds of start-up when imported eagerly. This checks ``sys.modules`` in a fresh process, so an
eager import added later fails here instead of silently slowing every run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: imported only to draw a labelled picture (fonts) or to encode through Pillow (featcli writes its own PNG)
_LAZY = ("featcli.render.paint", "PIL.ImageFont", "PIL.ImageDraw", "PIL.PngImagePlugin")

_PROBE = """
import json, sys
sys.argv = ["featcli", *sys.argv[1:]]
from featcli.cli import main
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code or 0
print(json.dumps([code, sorted(m for m in json.loads(sys.argv[-1]) if m in sys.modules)]), file=sys.stderr)
"""


def _imported(tmp_path: Path, *args: str) -> tuple[int, list[str]]:
    argv = ["run", str(ROOT / "samples" / "photo.jpg"), *args, "-o", str(tmp_path / "x.png"), "-q"]
    res = subprocess.run([sys.executable, "-c", _PROBE.replace("sys.argv[-1]", repr(json.dumps(_LAZY))), *argv],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    code, mods = json.loads(res.stderr.strip().splitlines()[-1])
    assert code == 0, res.stderr
    assert (tmp_path / "x.png").stat().st_size > 0
    return code, mods


@pytest.mark.parametrize("stages", [["-k", "sobel_x"], ["conv:w=sobel_x+sobel_y,p=1", "magnitude"]])
def test_raw_run_skips_painter_and_pillow_png(tmp_path: Path, stages: list[str]) -> None:
    assert _imported(tmp_path, *stages, "--raw")[1] == []


def test_labelled_run_still_paints(tmp_path: Path) -> None:
    """The probe sees real imports: the labelled default does load the painter."""
    mods = _imported(tmp_path, "-k", "sobel_x")[1]
    assert "featcli.render.paint" in mods and "PIL.ImageFont" in mods
