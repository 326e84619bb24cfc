"""``featcli shape ... --code``: the PyTorch ``nn.Module`` a stack describes, with torch's exact arguments.

Text only (pure Python, no torch import): one attribute per stage that is a module (``self.s3``), a
``forward`` that follows the stack, saved tensors as local variables and side branches as their own
chain. A test executes the code and checks every module's output shape and the parameter count.
"""

from __future__ import annotations

from typing import Any

from featcli.shape.report import ShapeReport, StageReport
from featcli.stages.grammar import format_shape

__all__ = ["module_code"]

_PADS = {"zeros": "nn.ZeroPad2d", "reflect": "nn.ReflectionPad2d", "replicate": "nn.ReplicationPad2d",
         "circular": "nn.CircularPad2d"}
_SIMPLE = {"relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "softmax": "nn.Softmax(dim=1)",
           "flatten": "nn.Flatten()", "gap": "nn.AdaptiveAvgPool2d(1)", "gmp": "nn.AdaptiveMaxPool2d(1)"}


def _pair(v: Any) -> str:
    a, b = (v, v) if isinstance(v, int) else v
    return str(a) if a == b else f"({a}, {b})"


def _conv(c: dict[str, Any]) -> str:
    (t, b), (left, r) = c["p"]
    sym = t == b and left == r
    pad = f", padding={_pair((t, left))}" if sym and (t or left) else ""
    mode = f", padding_mode={c['pm']!r}" if sym and c["pm"] != "zeros" and (t or left) else ""
    extra = "".join([f", stride={_pair(c['s'])}" if tuple(c["s"]) != (1, 1) else "", pad,
                     f", dilation={_pair(c['d'])}" if tuple(c["d"]) != (1, 1) else "",
                     f", groups={c['g']}" if c["g"] != 1 else "", "" if c["bias"] else ", bias=False", mode])
    conv = f"nn.Conv2d({c['in']}, {c['out']}, {_pair(c['k'])}{extra})"
    if sym:
        return conv
    return f"nn.Sequential({_PADS[c['pm']]}(({left}, {r}, {t}, {b})), {conv})"  # torch's 'same' pads unevenly


def _module(row: StageReport) -> str | None:
    """The module of one stage, or None when ``forward`` does it inline (abs, magnitude, save, add, cat)."""
    c, op = row.config, row.op
    if op in _SIMPLE:
        return _SIMPLE[op]
    if op == "conv":
        return _conv(c)
    if op == "convt":
        extra = "".join([f", stride={_pair(c['s'])}" if tuple(c["s"]) != (1, 1) else "",
                         f", padding={_pair(c['p'])}" if any(c["p"]) else "",
                         f", output_padding={_pair(c['op'])}" if any(c["op"]) else "",
                         f", groups={c['g']}" if c["g"] != 1 else "", "" if c["bias"] else ", bias=False",
                         f", dilation={_pair(c['d'])}" if tuple(c["d"]) != (1, 1) else ""])
        return f"nn.ConvTranspose2d({c['in']}, {c['out']}, {_pair(c['k'])}{extra})"
    if op == "maxpool":
        extra = "".join([f", padding={_pair(c['p'])}" if any(c["p"]) else "",
                         f", dilation={_pair(c['d'])}" if tuple(c["d"]) != (1, 1) else "",
                         ", ceil_mode=True" if c["ceil"] else ""])
        return f"nn.MaxPool2d({_pair(c['k'])}, stride={_pair(c['s'])}{extra})"
    if op == "avgpool":
        extra = "".join([f", padding={_pair(c['p'])}" if any(c["p"]) else "", ", ceil_mode=True" if c["ceil"] else "",
                         "" if c["cip"] else ", count_include_pad=False"])
        return f"nn.AvgPool2d({_pair(c['k'])}, stride={_pair(c['s'])}{extra})"
    if op in ("adaptiveavg", "adaptivemax"):
        return f"nn.Adaptive{'Avg' if op == 'adaptiveavg' else 'Max'}Pool2d({_pair(c['o'])})"
    if op == "leakyrelu":
        return f"nn.LeakyReLU({c['slope']})"
    if op == "prelu":
        return f"nn.PReLU({c['n']}, init={c.get('init', 0.25)})"
    if op == "bn":
        return f"nn.BatchNorm2d({row.in_shape[1]}, eps={c['eps']})"
    if op == "dropout":
        return f"nn.Dropout({c['p']})"
    if op == "linear":
        return f"nn.Linear({c['in']}, {c['out']}{'' if c['bias'] else ', bias=False'})"
    return None


def _inline(row: StageReport, var: str) -> str:
    if row.op == "abs":
        return f"torch.abs({var})"
    if row.op == "magnitude":
        return f"{var}.pow(2).sum(dim=1, keepdim=True).sqrt()"
    raise ValueError(f"no code for {row.op}")  # pragma: no cover - every registry op is handled


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
        if row.op in ("add", "cat"):
            other = branch_var or saved[c["name"]]
            expr = f"x + {other}" if row.op == "add" else f"torch.cat([x, {other}], dim=1)"
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
            body.append(f"{dst} = self.s{row.index}({src})  # {shape}")
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
