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
