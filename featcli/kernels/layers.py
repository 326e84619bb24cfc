"""A whole conv layer by reference, for ``featcli kernels show``: a featcli model's N-th conv or a checkpoint's.

References:

- ``MODEL.safetensors:N``: the N-th conv layer (1-based) of a featcli model file (:mod:`featcli.io.modelfile`);
- ``MODEL.safetensors:sK``: stage K of the model's stack, which must be a conv (``sK`` is the layer's name
  in the ``Net`` of ``featcli shape --code`` and in the file: ``sK.weight``); ``sK.weight`` works too;
- ``MODEL.safetensors`` alone: its conv layer when it has exactly one;
- ``FILE:KEY`` of any checkpoint featcli reads safely (:mod:`featcli.kernels.learned`): a 4-D conv weight.

:func:`load_layer` (a checkpoint's) and :func:`model_layer` (a featcli model's, once
:func:`featcli.engine.network.open_model`, the one validator of model files, has accepted the file) return a
:class:`ConvLayer`: the float32 weight ``(O, I, kh, kw)``, its bias, labels for its input channels when they
are the image's, and a short summary (:meth:`ConvLayer.summary`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.errors import WeightsError
from featcli.io.modelfile import ModelMeta, is_model_file
from featcli.kernels.learned import check_weight, load_weight, split_ref
from featcli.stages.registry import Op
from featcli.stages.spec import parse_stage

if TYPE_CHECKING:
    import torch

_STAGE_REF = re.compile(r"s([0-9]{1,6})(?:\.weight)?")


@dataclass(frozen=True, eq=False)
class ConvLayer:
    """One conv layer's weights and where they came from."""

    ref: str
    path: str
    key: str  #: the tensor's key in the file (``s1.weight``, ``conv1.weight``)
    weight: torch.Tensor  #: float32 ``(O, I, kh, kw)``
    bias: torch.Tensor | None  #: float32 ``(O,)``
    stage: str | None = None  #: the stage text, for a featcli model (``conv:out=6,k=5,p=2``)
    stage_index: int | None = None  #: 1-based stage index in the model's stack
    conv_index: int | None = None  #: 1-based among the model's conv layers
    conv_count: int | None = None  #: how many conv layers the model has
    in_labels: tuple[str, ...] | None = None  #: ``("R", "G", "B")`` when the inputs are the image's channels

    @property
    def title(self) -> str:
        """The picture's title: the reference, and the stage for a model's layer."""
        if self.stage is None:
            return f"{Path(self.path).name}:{self.key}" if self.key else Path(self.path).name
        return f"{Path(self.path).name}:{self.conv_index} · s{self.stage_index} {self.stage}"

    def summary(self) -> dict[str, Any]:
        """Shape, value range, mean |w|, and per output channel its L2 norm, range and bias (JSON-able)."""
        w = self.weight.double()
        o = w.shape[0]
        flat = w.reshape(o, -1)
        return {
            "ref": self.ref, "path": self.path, "key": self.key, "stage": self.stage,
            "stage_index": self.stage_index, "conv_index": self.conv_index, "conv_count": self.conv_count,
            "shape": list(self.weight.shape), "min": float(w.min()), "max": float(w.max()),
            "mean": float(w.mean()), "mean_abs": float(w.abs().mean()),
            "in_labels": list(self.in_labels) if self.in_labels else None,
            "channels": [{"out": k + 1, "norm": float(flat[k].norm()), "min": float(flat[k].min()),
                          "max": float(flat[k].max()),
                          "bias": None if self.bias is None else float(self.bias[k])} for k in range(o)],
        }


def is_model_ref(ref: str) -> bool:
    """True when ``ref`` is ``FILE[:PART]`` and ``FILE`` is a featcli model file (reads its header only)."""
    path, _ = split_ref(ref)
    return is_model_file(path)


def load_layer(ref: str, *, allow_torchscript: bool = False) -> ConvLayer:
    """The conv layer ``FILE:KEY`` names in a checkpoint (see the module docstring); a featcli model's layer is
    :func:`model_layer`'s, once the model file has been validated (:func:`featcli.engine.network.open_model`).

    Raises:
        WeightsError: an unreadable or hostile file; an unknown key (a few known conv keys listed); a tensor
            that is not a 4-D conv weight; a featcli model file (not validated here).
    """
    path, _ = split_ref(ref)
    if is_model_file(path):
        raise WeightsError(f"{path}: a featcli model file; its layers are read once the model is validated "
                           "(featcli.engine.network.open_model, then model_layer)")
    lw = load_weight(ref, allow_torchscript=allow_torchscript)
    if lw.weight.ndim != 4:
        raise WeightsError(f"{lw.path}:{lw.key}: a {lw.weight.ndim}-D tensor {list(lw.weight.shape)}, not a conv "
                           "layer's (out, in, kh, kw) weight")
    return ConvLayer(ref, lw.path, lw.key, lw.weight, lw.bias)


def _image_inputs(meta: ModelMeta, stage_index: int) -> tuple[str, ...] | None:
    """The input channels' names when the stages before ``stage_index`` keep the image's channels."""
    from featcli.stages.registry import REGISTRY

    for text in meta.stack[: stage_index - 1]:
        if not REGISTRY[parse_stage(text).op].channelwise:
            return None
    c = meta.input_shape[0]
    return ("R", "G", "B") if c == 3 else ("gray",) if c == 1 else None


def model_layer(ref: str, path: str, meta: ModelMeta, tensors: Mapping[str, torch.Tensor]) -> ConvLayer:
    """The conv layer ``ref`` (``MODEL:N``, ``MODEL:sK``, ``MODEL``) names in a featcli model that
    :func:`featcli.engine.network.open_model` has validated: its metadata and its trained tensors.

    Raises:
        WeightsError: N out of range (how many conv layers there are), a stage that is not a conv, an unknown part.
    """
    _, part = split_ref(ref)
    convs = [i for i, t in enumerate(meta.stack, 1) if parse_stage(t).op is Op.CONV]
    listing = ", ".join(f":{n} (s{i} {meta.stack[i - 1]})" for n, i in enumerate(convs[:8], 1)) + (
        " ..." if len(convs) > 8 else "")
    if not convs:
        raise WeightsError(f"{path}: the model has no conv layer (its stack: {' '.join(meta.stack)[:200]})")
    if part is None or part == "":
        if len(convs) > 1:
            raise WeightsError(f"{path}: the model has {len(convs)} conv layers; pick one: {listing}")
        n = 1
    elif part.isdigit():
        n = int(part)
        if not 1 <= n <= len(convs):
            raise WeightsError(f"{path}: no conv layer {part}; the model has {len(convs)} conv layer"
                               f"{'s' * (len(convs) > 1)}: {listing}")
    elif (m := _STAGE_REF.fullmatch(part)) is not None:
        k = int(m.group(1))
        if not 1 <= k <= len(meta.stack):
            raise WeightsError(f"{path}: no stage {k}; the stack has {len(meta.stack)} stages; conv layers: "
                               f"{listing}")
        if k not in convs:
            raise WeightsError(f"{path}: stage s{k} is {meta.stack[k - 1]!r}, not a conv; conv layers: "
                               f"{listing}")
        n = convs.index(k) + 1
    else:
        raise WeightsError(f"{path}: no conv layer {part[:60]!r}; name one by number (1 to {len(convs)}) or "
                           f"stage (s{convs[0]}): {listing}")
    stage_index = convs[n - 1]
    key = f"s{stage_index}.weight"
    if key not in tensors:
        raise WeightsError(f"{path}: stage s{stage_index} has no tensor {key!r} in the file")
    weight = check_weight(tensors[key], what=f"{path}:{key}")
    if weight.ndim != 4:
        raise WeightsError(f"{path}:{key}: a {weight.ndim}-D tensor, not a conv weight")
    bias = None
    bkey = f"s{stage_index}.bias"
    if bkey in tensors and tuple(tensors[bkey].shape) == (weight.shape[0],):
        bias = tensors[bkey].float().contiguous()  # checked finite as it was read
    labels = _image_inputs(meta, stage_index)
    if labels is not None and len(labels) != weight.shape[1]:
        labels = None
    return ConvLayer(ref, path, key, weight, bias, meta.stack[stage_index - 1], stage_index, n, len(convs),
                     labels)
