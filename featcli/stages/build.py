"""A run's stack from its command line: the ``-k`` conv stage, the positional stages, the ``--pool`` stages."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from featcli.enums import KernelMode, PaddingMode
from featcli.errors import SpecError
from featcli.stages.grammar import shorten
from featcli.stages.params import ConvSpec
from featcli.stages.registry import Op
from featcli.stages.spec import Stage, parse_stage

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
    if op is None:
        raise SpecError(f"--pool {shorten(text)}: expected max:k=N, avg:k=N[,s=S], global or global-max")
    return f"{op}:{rest}" if colon else op


def kernel_stage(
    refs: Sequence[str],
    *,
    mode: KernelMode = KernelMode.SUM,
    padding: str = "0",
    stride: str = "1",
    padding_mode: PaddingMode = PaddingMode.ZEROS,
) -> Stage:
    """All ``-k`` kernels as one conv stage (the refs may use ``name:key=value`` forms freely)."""
    parts = [f"p={padding}", f"s={stride}", f"pm={padding_mode.value}", f"mode={mode.value}"]
    template = parse_stage("conv:w=identity," + ",".join(parts))
    assert isinstance(template.params, ConvSpec)
    params = dataclasses.replace(template.params, w=tuple(refs))
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
    stack.extend(parse_stage(t, i) for i, t in enumerate(texts, first))
    if not stack:
        raise SpecError("nothing to run: give stages (e.g. conv:w=sobel_x+sobel_y relu maxpool:k=2) or -k KERNEL")
    return stack
