"""``--device auto|cpu|cuda|cuda:N|mps``: resolve to a real ``torch.device`` or fail clearly; bound ``--threads``."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from featcli.errors import DeviceError, UsageError

if TYPE_CHECKING:
    import torch

_SPEC = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")
#: Most CPU threads ``--threads`` takes. torch starts them all at once: ``--threads 100000`` made threads up to
#: the system's limit and then crashed (SIGSEGV); more threads than 4 per core only wait for one.
MAX_THREADS = max(256, 4 * (os.cpu_count() or 1))


def check_threads(threads: int | None) -> int | None:
    """``threads`` when it is None (the default) or 1 to :data:`MAX_THREADS`.

    >>> check_threads(None), check_threads(4)
    (None, 4)

    Raises:
        UsageError: anything else.
    """
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise UsageError(f"--threads must be 1 to {MAX_THREADS} (4 per core, at least 256), got {threads}")
    return threads


def resolve_device(spec: str = "auto") -> torch.device:
    """Turn a device option into a ``torch.device`` that exists on this machine.

    ``auto`` picks CUDA (device 0), then Apple MPS, then the CPU. An explicit device that is not
    available raises :class:`DeviceError`; there is no silent fallback.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    m = _SPEC.match(spec.strip().lower())
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise UsageError(f"--device {spec!r} is not one of auto, cpu, cuda, cuda:N, mps")
    kind, index = m.group(1), m.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise DeviceError("--device mps: Apple MPS is not available on this machine")
        return torch.device("mps")
    if not torch.cuda.is_available():
        cuda = torch.version.cuda
        build = "without CUDA" if cuda is None else f"with CUDA {cuda}, but no GPU is visible"
        raise DeviceError(f"--device {spec}: CUDA is not available (torch {torch.__version__} built {build})")
    n = torch.cuda.device_count()
    i = int(index or 0)
    if i >= n:
        raise DeviceError(f"--device {spec}: only {n} CUDA device(s) here (cuda:0..cuda:{n - 1})")
    return torch.device("cuda", i)


def cpu_without_torch(spec: str) -> bool:
    """True when ``spec`` surely means the CPU, decided without importing torch (which costs > 1 s).

    ``cpu`` always; ``auto`` when the installed torch is a CPU-only build (its ``torch/version.py``
    says ``cuda = None`` and ``hip = None``) on a platform without Apple MPS.
    """
    import importlib.util
    import re
    import sys
    from pathlib import Path

    s = spec.strip().lower()
    if s == "cpu":
        return True
    if s != "auto" or sys.platform == "darwin":
        return False
    found = importlib.util.find_spec("torch")
    if found is None or not found.submodule_search_locations:
        return False
    try:
        text = (Path(next(iter(found.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return False
    none = r"(?m)^{}\s*(?::[^=]*)?=\s*None\s*$"
    return bool(re.search(none.format("cuda"), text) and re.search(none.format("hip"), text))


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
