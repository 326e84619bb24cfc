"""``featcli shape ... --code``: the PyTorch ``nn.Module`` a stack describes, with torch's exact arguments.

Text only (pure Python, no torch import): one attribute per stage that is a module (``self.s3``), a
``forward`` that follows the stack, saved tensors as local variables and side branches as their own
chain. Each module and inline expression is the registry's (``OpDef.torch_args``, ``OpDef.code``), the
description the torch backend builds its modules from, so their ``state_dict`` names agree. A test executes
the code and checks every module's output shape and the parameter count.
"""

from __future__ import annotations

from typing import Any

from featcli.shape.report import ShapeReport, StageReport
from featcli.stages.grammar import format_shape
from featcli.stages.modules import module_call
from featcli.stages.registry import REGISTRY

__all__ = ["module_code"]


def _value(v: Any) -> str:
    """An argument as torch's examples write it: a pair of equal sizes as one number."""
    if isinstance(v, tuple) and len(v) == 2:
        a, b = v
        return str(a) if a == b else f"({a}, {b})"
    return repr(v)


def _module(row: StageReport) -> str | None:
    """The module of one stage, or None when ``forward`` does it inline (abs, magnitude, save, add, mul, cat): the
    registry's description (:func:`featcli.stages.modules.module_call`), which the torch backend builds too."""
    call = module_call(REGISTRY[row.resolved.op], row.config, row.in_shape[1] if len(row.in_shape) > 1 else 0)
    if call is None:
        return None
    args = ", ".join([*map(_value, call.args), *(f"{k}={_value(v)}" for k, v in call.kwargs)])
    module = f"nn.{call.cls}({args})"
    if call.pad is None:
        return module
    return f"nn.Sequential(nn.{call.pad[0]}({call.pad[1]}), {module})"  # torch's 'same' pads unevenly


def _inline(row: StageReport, var: str) -> str:
    return REGISTRY[row.resolved.op].code.format(x=var)


def module_code(report: ShapeReport, command: str, *, name: str = "Net") -> str:
    """Python source of an ``nn.Module`` class ``name`` for ``report``'s stack (``command`` is its docstring)."""
    init: list[str] = []
    body: list[str] = []
    notes: list[str] = []
    saved: dict[str, str] = {}
    branch_var: str | None = None
    for row in report.stages:
        c, shape = row.config, format_shape(row.out_shape)
        if row.op == "save":
            saved[c["name"]] = f"saved_{c['name']}"
            body.append(f"{saved[c['name']]} = x  # {row.spec}")
            continue
        if row.op in ("add", "mul", "cat"):
            other = branch_var or saved[c["name"]]
            expr = REGISTRY[row.resolved.op].code.format(x="x", other=other)
            body.append(f"x = {expr}  # {row.spec}: {shape}")
            branch_var = None
            continue
        src = (branch_var or saved[row.branch]) if row.branch else "x"
        dst = f"branch_{row.branch}" if row.branch else "x"
        module = _module(row)
        if module is None:
            body.append(f"{dst} = {_inline(row, src)}  # {row.spec}: {shape}")
        else:
            init.append(f"self.s{row.index} = {module}  # {row.spec}")
            call = REGISTRY[row.resolved.op].call or "{m}({x})"
            body.append(f"{dst} = {call.format(m=f'self.s{row.index}', x=src)}  # {shape}")
        if row.op == "conv" and c.get("w"):
            notes.append(f"# s{row.index}: featcli fills this conv's weights from {'+'.join(c['w'])} "
                         f"(mode={c.get('mode', 'sum')}); here they start random.")
        if row.branch:
            branch_var = dst
    lines = ["import torch", "from torch import nn", "", "", f"class {name}(nn.Module):",
             f'    """{command}: output {format_shape(report.output)}, {report.params:,} parameters."""', "",
             "    def __init__(self) -> None:", "        super().__init__()"]
    lines += [f"        {ln}" for ln in init] or ["        pass"]
    lines += ["", "    def forward(self, x: torch.Tensor) -> torch.Tensor:"]
    lines += [f"        {ln}" for ln in body] + ["        return x"]
    if notes:
        lines += ["", "", *notes]
    lines += ["", "", f"# {name}()(torch.zeros({', '.join(map(str, report.input))})).shape == "
                      f"torch.Size({list(report.output)})"]
    return "\n".join(lines) + "\n"
