"""Kernels: the named library, parametric families, user kernels and learned weights, as conv weights.

Weights follow the cross-correlation convention of ``torch.nn.functional.conv2d`` and ``cv2.filter2D``:
row 0 is the top row and nothing is flipped, so ``sobel_x`` (``[[-1,0,1],[-2,0,2],[-1,0,1]]``) is positive
on a dark-to-bright step from left to right. What a reference may be (``sobel_x``,
``gaussian:size=7,sigma=1.5``, an inline matrix, a file, ``FILE:KEY``) is in :mod:`featcli.kernels.refs`.

This package re-exports the public API; the modules, each one concern:

- :mod:`~featcli.kernels.matrix`: pure-Python matrix helpers (validate, normalise, rotate, pad, factor);
- :mod:`~featcli.kernels.families`: parametric families (``gaussian``, ``log``, ``gabor``...);
- :mod:`~featcli.kernels.kernel`: the :class:`Kernel` and :class:`ConvWeight` records;
- :mod:`~featcli.kernels.library`: kernel files and folders, :func:`library`;
- :mod:`~featcli.kernels.refs`: the reference grammar, :func:`expand`, :func:`resolve`, :func:`stage_kernels`;
- :mod:`~featcli.kernels.learned`: one tensor of a checkpoint (conv weight or PReLU slopes);
- :mod:`~featcli.kernels.conv`: the conv weight, its shape and its output-channel labels;
- :mod:`~featcli.kernels.cache`: the one cache, invalidated when a file read changes;
- :mod:`~featcli.kernels.correlate`: the NumPy cross-correlation (imports numpy; not re-exported here);
- :mod:`~featcli.kernels.layers`: a whole conv layer by reference, a featcli model's N-th conv or a
  checkpoint's ``FILE:KEY`` (``featcli kernels show``; not re-exported here).

Only the standard library is imported at module level; numpy (``.npy``) and torch (learned weights,
:func:`conv_weight`) are imported when needed, so shape queries stay instant.
"""

from __future__ import annotations

from featcli.kernels.conv import (
    channel_names,
    conv_labels,
    conv_weight,
    conv_weight_shape,
    unique_labels,
    weight_of,
)
from featcli.kernels.kernel import ConvWeight, Kernel
from featcli.kernels.learned import (
    LearnedWeight,
    TensorInfo,
    inspect_file,
    is_weights_ref,
    load_vector,
    load_weight,
    split_ref,
    vector_length,
)
from featcli.kernels.library import ENV_VAR, library, list_kernels, user_dirs
from featcli.kernels.matrix import Matrix
from featcli.kernels.refs import expand, resolve, stage_kernels

__all__ = [
    "ENV_VAR",
    "ConvWeight",
    "Kernel",
    "LearnedWeight",
    "Matrix",
    "TensorInfo",
    "channel_names",
    "conv_labels",
    "conv_weight",
    "conv_weight_shape",
    "weight_of",
    "expand",
    "inspect_file",
    "is_weights_ref",
    "library",
    "list_kernels",
    "load_vector",
    "load_weight",
    "resolve",
    "split_ref",
    "stage_kernels",
    "unique_labels",
    "user_dirs",
    "vector_length",
]
