"""The fast road keeps nothing without bound and nothing process-wide (featcli.shape.fast, one Kept helper)."""

from __future__ import annotations

import importlib
import io
import pkgutil
import random
from types import FunctionType, MethodType
from typing import Any

import featcli.shape
from featcli.errors import FeatcliError
from featcli.shape.fast.answers import Answers
from featcli.shape.fast.kept import Kept
from featcli.shape.service import serve
from tests.shape.test_steps import JOINS, STAGES


def test_kept_holds_at_most_its_limit() -> None:
    kept: Kept[int, str] = Kept(3)
    for n in range(10):
        assert kept.keep(n, str(n)) == str(n)
        assert len(kept) <= 3
        assert kept[n] == str(n)
    assert Kept(0).limit == 1


def _unbounded(obj: Any, path: str, seen: set[int], found: list[str]) -> None:
    """Every plain dict reachable from ``obj`` through closures, bound methods, slots, tuples and kept values."""
    if id(obj) in seen or isinstance(obj, (str, int, float, type(None))):
        return
    seen.add(id(obj))
    if isinstance(obj, Kept):
        for k, v in list(obj.items())[:50]:
            _unbounded(v, f"{path}[{k!r}]", seen, found)
    elif isinstance(obj, dict):
        found.append(path)
    elif isinstance(obj, (tuple, list)):
        for k, v in enumerate(obj):
            _unbounded(v, f"{path}[{k}]", seen, found)
    elif isinstance(obj, FunctionType):
        names = obj.__code__.co_freevars
        for name, cell in zip(names, obj.__closure__ or (), strict=True):
            _unbounded(cell.cell_contents, f"{path}.{obj.__name__}:{name}", seen, found)
    elif isinstance(obj, MethodType):
        _unbounded(obj.__self__, f"{path}.__self__", seen, found)
    elif type(obj).__module__.startswith("featcli.shape.fast"):
        for name in getattr(type(obj), "__slots__", ()):
            _unbounded(getattr(obj, name, None), f"{path}.{name}", seen, found)


def test_a_session_keeps_every_table_bounded() -> None:
    """After a session over every compiled stage at many sizes, whatever an Answers holds is a Kept."""
    answers = Answers()
    rng = random.Random(3)
    stacks = [[t] for t in STAGES] + [s.split() for s in JOINS]
    for _ in range(600):
        texts = rng.choice(stacks)
        try:
            answers.answer_texts((1, rng.choice([1, 3, 8]), rng.randint(1, 300), rng.randint(1, 300)), texts)
        except FeatcliError:  # refusals are answers too; only what is kept matters here
            pass
    found: list[str] = []
    _unbounded(answers, "answers", set(), found)
    assert not found, found


def _module_tables() -> dict[str, int]:
    tables = {}
    for info in pkgutil.walk_packages(featcli.shape.__path__, "featcli.shape."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, (dict, list, set)):
                tables[f"{info.name}.{name}"] = len(value)
    return tables


def test_nothing_is_kept_process_wide() -> None:
    """A `featcli shape -` session leaves every module-level table of featcli.shape as it found it."""
    before = _module_tables()
    rng = random.Random(4)
    lines = [f"1x3x{rng.randint(1, 400)}x{rng.randint(1, 400)} convt:k=3,s=2 {rng.choice(STAGES)}" for _ in range(300)]
    lines += [f"1x3x{rng.randint(1, 400)}x9 maxpool:k=2,s=1,p=? conv:k=3,p=?,pm=reflect" for _ in range(50)]
    serve(io.StringIO("\n".join(lines) + "\n"), io.StringIO())
    after = _module_tables()
    grown = {k: (before.get(k, 0), n) for k, n in after.items() if n != before.get(k, 0)}
    assert not grown, grown
