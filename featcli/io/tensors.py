"""Raw feature maps as files: float32 tensors in ``.npy`` (one), ``.npz`` or ``.pt`` (several, by name).

The one place both a stage run and a network run turn tensors into NumPy and write them (through
:class:`featcli.io.outputs.PendingOutputs`, so a failed image leaves nothing). ``.npy`` is written with
``allow_pickle=False``; ``.pt`` holds a plain ``dict`` of CPU tensors (``torch.load(..., weights_only=True)``
reads it back).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from featcli.errors import OutputError
from featcli.io.outputs import PendingOutputs

__all__ = ["SAVE_EXTS", "as_numpy", "save_tensors"]

SAVE_EXTS = (".npz", ".pt", ".npy")


def as_numpy(t: Any) -> Any:
    """A tensor or array as a float32 NumPy array (torch tensors are moved to the CPU first)."""
    if hasattr(t, "detach"):
        import torch

        return t.detach().to("cpu", torch.float32).numpy()
    import numpy as np

    return np.asarray(t, dtype=np.float32)


def save_tensors(tensors: Mapping[str, Any], path: str, out: PendingOutputs, *, hint: str) -> None:
    """Write ``tensors`` (name -> tensor) to ``path`` by its extension; ``hint`` says how to pick one map when
    a ``.npy`` would get several (``use --stages N, or .npz``)."""
    ext = Path(path).suffix.lower()
    arrays = {k: as_numpy(v) for k, v in tensors.items()}
    if ext == ".npy" and len(arrays) != 1:
        raise OutputError(f".npy holds one tensor; {len(arrays)} selected ({hint})", path=path)

    def write(fh: Any) -> None:
        import numpy as np

        if ext == ".npy":
            np.save(fh, next(iter(arrays.values())), allow_pickle=False)
        elif ext == ".npz":
            np.savez(fh, **arrays)
        else:
            import torch

            buf = io.BytesIO()
            torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, buf)
            fh.write(buf.getvalue())

    out.write(path, write)
