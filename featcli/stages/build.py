"""A run's stack from its command line: the ``-k`` conv stage, the positional stages, the ``--pool`` stages."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import SpecError
from featcli.stages.grammar import shorten, split_top_level
from featcli.stages.params import ConvSpec
from featcli.stages.registry import Op, lookup
from featcli.stages.spec import Stage, parse_stage
from featcli.stages.stacks import expand

_POOL_ALIASES = {
    "max": "maxpool", "avg": "avgpool", "mean": "avgpool", "global": "gap", "gap": "gap",
    "global-avg": "gap", "global-max": "gmp", "gmp": "gmp",
}


def pool_stage(text: str) -> str:
    """``--pool`` shorthand -> a stage spec: ``max:k=2`` -> ``maxpool:k=2``, ``global`` -> ``gap``.

    >>> pool_stage("max:k=2")
    'maxpool:k=2'
    """
    kind, colon, rest = text.partition(":")
    op = _POOL_ALIASES.get(kind.strip().lower())
    d = lookup(kind.strip())
    if op is None and d is not None and d.name in _POOL_OPS:  # the stage's own name: --pool maxpool:k=2
        op = d.name
    if op is None:
        raise SpecError(f"--pool {shorten(text)}: expected max:k=N, avg:k=N[,s=S], global or global-max (or a pooling "
                        "stage: maxpool:k=2, avgpool:k=3,s=2, gap, gmp)")
    return f"{op}:{rest}" if colon else op


_POOL_OPS = {"maxpool", "avgpool", "gap", "gmp", "adaptiveavg", "adaptivemax"}
_BARE_NAME = re.compile(r"[A-Za-z_][\w]*\Z")


def split_kernel_refs(refs: Sequence[str]) -> list[str]:
    """``-k`` values as single kernel references: ``sobel_x+sobel_y`` (the stage language's form) and
    ``sobel_x,sobel_y`` (names only) give two; an existing file name is never split.

    >>> split_kernel_refs(["sobel_x+sobel_y", "gaussian:size=5,sigma=1", "box,laplacian"])
    ['sobel_x', 'sobel_y', 'gaussian:size=5,sigma=1', 'box', 'laplacian']
    """
    out: list[str] = []
    for ref in refs:
        if _is_file(ref):
            out.append(ref)
            continue
        for piece in split_top_level(ref, "+"):
            names = piece.split(",")
            out.extend(names if len(names) > 1 and all(_BARE_NAME.match(n.strip()) for n in names) else [piece])
    return [r.strip() for r in out if r.strip()]


def _is_file(ref: str) -> bool:
    try:
        return os.path.isfile(ref)
    except (OSError, ValueError):
        return False


def kernel_stage(
    refs: Sequence[str],
    *,
    mode: KernelMode = KernelMode.SUM,
    padding: str = "0",
    stride: str = "1",
    padding_mode: PaddingMode = PaddingMode.ZEROS,
) -> Stage:
    """All ``-k`` kernels as one conv stage (the refs may use ``name:key=value`` forms freely)."""
    refs = split_kernel_refs(refs)
    parts = [f"p={padding}", f"s={stride}", f"pm={padding_mode.value}", f"mode={mode.value}"]
    template = parse_stage("conv:w=identity," + ",".join(parts))
    assert isinstance(template.params, ConvSpec)
    params = dataclasses.replace(template.params, weights=tuple(refs))
    defaults = {"p=0", "s=1", "pm=zeros", "mode=sum"}
    text = ",".join(["conv:w=" + "+".join(refs), *(x for x in parts if x not in defaults)])
    return Stage(text, Op.CONV, params)


def build_stack(
    stage_texts: Sequence[str],
    *,
    kernels: Sequence[str] = (),
    pools: Sequence[str] = (),
    kernel_mode: KernelMode = KernelMode.SUM,
    padding: str = "0",
    stride: str = "1",
    padding_mode: PaddingMode = PaddingMode.ZEROS,
) -> list[Stage]:
    """The run's stack: the ``-k`` conv stage first, then the positional stages, then ``--pool`` stages.

    Stage numbers in messages are positions in the whole stack (the ``-k`` stage is 1 when given).
    """
    stack: list[Stage] = []
    if kernels:
        stack.append(kernel_stage(kernels, mode=kernel_mode, padding=padding, stride=stride,
                                  padding_mode=padding_mode))
    texts = list(stage_texts) + [pool_stage(p) for p in pools]
    first = len(stack) + 1
    stack.extend(parse_stage(t, i) for i, t in enumerate(expand(texts), first))
    if not stack:
        raise SpecError("nothing to run: give stages (e.g. conv:w=sobel_x+sobel_y relu maxpool:k=2) or -k KERNEL")
    return stack
