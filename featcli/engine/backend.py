"""What every backend provides, and the one-function-per-op table each fills in.

A backend turns a :class:`featcli.engine.plan.PlannedStage` into a function of the tensor
(:meth:`Backend.compile`) and measures a stage's output for the results table. Its per-op functions are
registered with :meth:`OpTable.implements`; ops it cannot run are declared with a reason in
:meth:`OpTable.unsupported`. A test asserts that for every backend each registry op is one or the other.
Which backend runs a plan, how it is made and what input it takes from a loaded image is
:mod:`featcli.engine.backends`' to say.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from featcli.engine.plan import PlannedStage
from featcli.errors import StageError
from featcli.stages.registry import Op

#: A compiled stage: the tensor in, the tensor out (``add``/``cat``: the tensor and the other operand in).
StageFn = Callable[..., Any]
Env = TypeVar("Env")
#: A backend's function for one op: the planned stage and the backend's environment -> a StageFn.
Compiler = Callable[[PlannedStage, Any], StageFn]
#: When an op is only sometimes supported: the planned stage -> why not, or None.
Condition = Callable[[PlannedStage], "str | None"]


@dataclass(frozen=True)
class SampleStats:
    """One sample's output of one stage: extremes, sum, size, zeros, and per-map extremes if asked."""

    lo: float
    hi: float
    total: float
    count: int
    zeros: int
    ranges: list[tuple[float, float]] | None = None


class Backend(Protocol):
    """What the loop (:func:`featcli.engine.loop.execute`) needs of a backend."""

    name: str

    def compile(self, stage: PlannedStage) -> StageFn: ...
    def context(self) -> Any: ...
    def sync(self) -> None: ...
    def shape(self, y: Any) -> tuple[int, ...]: ...
    def sample(self, y: Any, i: int) -> Any: ...
    def empty(self, shape: Sequence[int]) -> Any: ...
    def stats(self, y: Any, ranges: bool = ..., extremes: bool = ...) -> list[SampleStats]: ...


class OpTable(Generic[Env]):
    """One backend's op functions, with the conditions under which each applies."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.impls: dict[Op, Compiler] = {}
        self.conditions: dict[Op, Condition] = {}
        self.missing: dict[Op, str] = {}

    def implements(self, *ops: Op, when: Condition | None = None) -> Callable[[Compiler], Compiler]:
        def register(fn: Compiler) -> Compiler:
            for op in ops:
                if op in self.impls or op in self.missing:
                    raise RuntimeError(f"{self.name}: {op} registered twice")  # pragma: no cover
                self.impls[op] = fn
                if when is not None:
                    self.conditions[op] = when
            return fn

        return register

    def unsupported(self, reason: str, *ops: Op) -> None:
        for op in ops:
            self.missing[op] = reason

    def why_not(self, stage: PlannedStage) -> str | None:
        """None when this backend runs ``stage``, else the reason it does not."""
        op = stage.op
        if op in self.missing:
            return f"{op}: {self.missing[op]}"
        if op not in self.impls:
            return f"{op}: not implemented on the {self.name} engine"
        cond = self.conditions.get(op)
        return cond(stage) if cond is not None else None

    def compile(self, stage: PlannedStage, env: Any) -> StageFn:
        reason = self.why_not(stage)
        if reason is not None:
            raise StageError(f"{stage.label()}: the {self.name} engine cannot run it ({reason})")
        return self.impls[stage.op](stage, env)
