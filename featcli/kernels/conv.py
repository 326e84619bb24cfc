"""Kernels meet images: the conv weight that applies a stage's kernels, its shape, and its channel labels.

:func:`conv_weight_shape` answers the shape engine without numpy or torch; :func:`conv_weight` builds the
torch tensor ``(out, in / groups, kh, kw)``. :func:`conv_labels` is the one place the output channels of a
conv are named (``sobel_x``, ``sobel_x#2``, ``sobel_x[R]``, ``conv1[0]``), so every engine labels alike.
Both build on :func:`featcli.kernels.refs.stage_kernels`, which is cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from featcli.enums import KernelMode
from featcli.errors import KernelError, ShapeError
from featcli.kernels.kernel import ConvWeight, Kernel
from featcli.kernels.learned import LearnedWeight
from featcli.kernels.refs import stage_kernels

if TYPE_CHECKING:
    import torch


def _learned_groups(lw: LearnedWeight, in_channels: int, mode: KernelMode) -> int:
    out, cin = lw.weight.shape[0], lw.weight.shape[1]
    if cin == in_channels:
        return 1
    if cin == 1 and mode is KernelMode.DEPTHWISE and out % in_channels == 0:
        return in_channels  # a depthwise layer (MobileNet-style), asked for explicitly
    shape = "x".join(str(s) for s in lw.shape)
    raise ShapeError(f"{lw.ref} ({shape}) expects {cin} input channels, the image has {in_channels}")


def _check_channels(in_channels: int) -> None:
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ShapeError(f"in_channels={in_channels!r}; expected a whole number >= 1")


def conv_weight_shape(
    refs: Sequence[str],
    in_channels: int,
    mode: KernelMode,
    kernels_dir: str | None = None,
    *,
    allow_torchscript: bool = False,
) -> tuple[int, int, int, int, int]:
    """``(out_channels, in_channels_per_group, kh, kw, groups)`` of the conv that applies ``refs``.

    For n 2-D kernels on C channels: ``sum`` -> ``(n, C, kh, kw, 1)``; ``gray`` -> ``(n, 1, kh, kw, 1)``;
    ``depthwise`` -> ``(n*C, 1, kh, kw, C)``. A learned 4-D weight gives its own shape (mode ignored, except
    that a ``(m, 1, kh, kw)`` weight with ``depthwise`` runs with ``groups=C``). Pure Python unless a ref
    is a weight file.

    >>> conv_weight_shape(["sobel_x", "sobel_y"], 3, KernelMode.SUM)
    (2, 3, 3, 3, 1)

    Raises:
        KernelError: a bad reference, or kernel sizes that cannot be centred together.
        ShapeError: a learned weight whose input channels do not match ``in_channels``.
    """
    _check_channels(in_channels)
    mode = KernelMode(mode)
    plan = stage_kernels(refs, kernels_dir, allow_torchscript)
    if not isinstance(plan, list):
        o, i, kh, kw = (int(s) for s in plan.shape)
        return o, i, kh, kw, _learned_groups(plan, in_channels, mode)
    n, (kh, kw) = len(plan), plan[0].shape
    if mode is KernelMode.SUM:
        return n, in_channels, kh, kw, 1
    if mode is KernelMode.GRAY:
        return n, 1, kh, kw, 1
    return n * in_channels, 1, kh, kw, in_channels


def channel_names(in_channels: int) -> list[str]:
    """Default names of input channels in labels: R, G, B for 3 channels, else 0, 1, ..."""
    return ["R", "G", "B"] if in_channels == 3 else [str(i) for i in range(in_channels)]


def unique_labels(names: Sequence[str]) -> list[str]:
    """Repeated names get ``#2``, ``#3``...: ``sobel_x+sobel_x`` labels its maps ``sobel_x, sobel_x#2``.

    >>> unique_labels(["sobel_x", "sobel_y", "sobel_x"])
    ['sobel_x', 'sobel_y', 'sobel_x#2']
    """
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}#{seen[n]}")
    return out


def conv_labels(
    kernels: Sequence[Kernel] | LearnedWeight,
    in_channels: int,
    mode: KernelMode,
    channel_labels: Sequence[str] | None = None,
) -> list[str]:
    """The label of each output channel of the conv that applies ``kernels`` (from :func:`stage_kernels`).

    A learned layer: ``conv1[0]``, ``conv1[1]``...; 2-D kernels: their names made unique
    (:func:`unique_labels`); ``depthwise``: ``sobel_x[R]`` for kernel ``sobel_x`` on input channel ``R``
    (``channel_labels``, default :func:`channel_names`), in the conv's output order ``c * n + o``.

    >>> conv_labels([Kernel("d", ((1.0, -1.0),))] * 2, 3, KernelMode.DEPTHWISE)
    ['d[R]', 'd#2[R]', 'd[G]', 'd#2[G]', 'd[B]', 'd#2[B]']

    Raises:
        KernelError: ``channel_labels`` does not hold ``in_channels`` labels.
    """
    if not isinstance(kernels, Sequence):
        return [f"{kernels.label}[{o}]" for o in range(kernels.shape[0])]
    names = unique_labels([k.name for k in kernels])
    if KernelMode(mode) is not KernelMode.DEPTHWISE:
        return names
    chans = list(channel_labels) if channel_labels is not None else channel_names(in_channels)
    if len(chans) != in_channels:
        raise KernelError(f"{len(chans)} channel labels for {in_channels} channels")
    return [f"{name}[{c}]" if in_channels > 1 else name for c in chans for name in names]


def conv_weight(
    refs: Sequence[str],
    in_channels: int,
    mode: KernelMode,
    *,
    kernels_dir: str | None = None,
    dtype: torch.dtype | None = None,
    allow_torchscript: bool = False,
    channel_labels: Sequence[str] | None = None,
) -> ConvWeight:
    """The conv weight tensor ``(out, in / groups, kh, kw)`` that applies ``refs`` in ``mode``.

    ``sum``: ``weight[o, c] = kernel_o`` for every input channel c (the classic 3x3x3x2 Sobel example is
    ``conv_weight(["sobel_x", "sobel_y"], 3, "sum")``); ``gray``: ``(n, 1, kh, kw)`` and ``gray=True``;
    ``depthwise``: ``groups=C``, output channel ``c * n + o`` is kernel o on channel c, labelled
    ``"sobel_x[R]"``. ``dtype`` defaults to float32.

    Raises:
        KernelError, WeightsError, ShapeError: as :func:`conv_weight_shape`.
    """
    plan = stage_kernels(refs, kernels_dir, allow_torchscript)
    return weight_of(plan, in_channels, mode, dtype=dtype, channel_labels=channel_labels)


def weight_of(
    plan: Sequence[Kernel] | LearnedWeight,
    in_channels: int,
    mode: KernelMode,
    *,
    dtype: torch.dtype | None = None,
    channel_labels: Sequence[str] | None = None,
) -> ConvWeight:
    """:func:`conv_weight` for kernels already resolved (what :func:`stage_kernels` returns): the one place
    the conv weight tensor of a stage's kernels is built."""
    import torch

    _check_channels(in_channels)
    mode = KernelMode(mode)
    dtype = torch.float32 if dtype is None else dtype
    if not isinstance(plan, Sequence):
        groups = _learned_groups(plan, in_channels, mode)
        # Copies: the learned layer is cached and shared, the ConvWeight is the caller's own.
        bias = None if plan.bias is None else plan.bias.to(dtype, copy=True)
        weight = plan.weight.to(dtype, copy=True)
        return ConvWeight(weight, bias, groups, conv_labels(plan, in_channels, mode), False)
    plan = list(plan)
    labels = conv_labels(plan, in_channels, mode, channel_labels)
    k3 = torch.tensor([k.weights for k in plan], dtype=torch.float64).to(dtype)  # (n, kh, kw)
    n, kh, kw = k3.shape
    if mode is KernelMode.SUM:
        weight = k3[:, None].expand(n, in_channels, kh, kw).contiguous()
        return ConvWeight(weight, None, 1, labels, False, tuple(plan))
    if mode is KernelMode.GRAY:
        return ConvWeight(k3[:, None].contiguous(), None, 1, labels, True, tuple(plan))
    weight = k3.repeat(in_channels, 1, 1)[:, None].contiguous()
    return ConvWeight(weight, None, in_channels, labels, False, tuple(plan))
