"""An interrupted --ray run: Ray Data's iterator, collected after Ray stopped, prints no traceback."""

from __future__ import annotations

import gc
import os
import sys

import pytest

from featcli.run.distributed import _quiet_ray_generators


def _generator(filename: str) -> object:
    code = compile("def g():\n    try:\n        yield 1\n    finally:\n        raise ValueError('Ray is gone')\n",
                   filename, "exec")
    space: dict[str, object] = {}
    exec(code, space)  # a generator whose code lives in that file, as Ray Data's does
    gen = space["g"]()  # type: ignore[operator]
    next(gen)  # type: ignore[call-overload]
    return gen


def test_ray_data_generators_collected_after_ray_stopped_print_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(str(u.exc_value)))
    _quiet_ray_generators()
    _quiet_ray_generators()  # once per process: not wrapped twice
    ray_gen = _generator(os.path.join("site-packages", "ray", "data", "iterator.py"))
    other = _generator(os.path.join("site-packages", "other", "mod.py"))
    del ray_gen, other
    gc.collect()
    assert seen == ["Ray is gone"]  # only the other one reaches the hook there was
    assert capsys.readouterr().err == ""


#: the line Ray 2.60's core worker writes on the driver's stderr for every Ray Data actor pool (issue #26)
_RAY_LINE = (b"[2026-12-07 05:56:34,868 E 14520 14520] core_worker.cc:2465: Actor with class name: "
             b"'MapWorker(MapBatches(_PartRunner))' and ID: '04ef89a164fa9026d84a19f401000000' has constructor "
             b"arguments in the object store and max_restarts > 0. If the arguments in the object store go out of "
             b"scope or are lost, the actor restart will fail. See https://github.com/ray-project/ray/issues/53727 "
             b"for more details.\n")


def test_only_rays_restart_note_is_dropped_from_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """Native code writes to descriptor 2 past Python: the filter drops that one line and forwards the rest."""
    from featcli.io.fdfilter import dropping_lines
    from featcli.run.distributed import RESTART_NOTE

    with dropping_lines(RESTART_NOTE, hold=b"["):
        os.write(2, b"before\n[2026-12-07 05:56:34,868 E 1 1] core_worker.cc:99: another Ray error\n")
        os.write(2, _RAY_LINE[:40])  # a line arrives in pieces
        os.write(2, _RAY_LINE[40:] + b"progress \r")
        os.write(2, b"featcli: error: one line\n")
        os.write(2, b"[partial at the end")
    os.write(2, b"\nafter\n")
    err = capfd.readouterr().err
    assert err == ("before\n[2026-12-07 05:56:34,868 E 1 1] core_worker.cc:99: another Ray error\nprogress \r"
                   "featcli: error: one line\n[partial at the end\nafter\n")
    assert RESTART_NOTE.match(_RAY_LINE)
