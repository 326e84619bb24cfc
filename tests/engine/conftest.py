"""The backend fixture: each engine test runs on numpy, torch and torch-streamed (and CUDA when present)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@dataclass(frozen=True)
class EngineCase:
    """How a RunConfig selects one engine: ``--engine``, ``--stream`` and ``--device``."""

    id: str
    engine: str
    stream: str
    device: str

    @property
    def backend(self) -> str:
        return "numpy" if self.engine == "numpy" else "torch"


def _cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return bool(torch.cuda.is_available())


CASES = [EngineCase("numpy", "numpy", "off", "cpu"), EngineCase("torch", "torch", "off", "cpu"),
         EngineCase("torch-streamed", "torch", "on", "cpu")]
CASES.append(EngineCase("cuda", "torch", "off", "cuda")) if _cuda() else None


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def engine(request: pytest.FixtureRequest) -> EngineCase:
    case: EngineCase = request.param
    return case


@pytest.fixture(scope="session")
def small_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 41x57 photo-like RGB PNG with smooth gradients, an edge and noise."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:41, 0:57].astype(np.float64)
    a = np.stack([x * 4, y * 5, 128 + 90 * np.sin(x / 3 + y / 7)], -1) + rng.normal(0, 12, (41, 57, 3))
    a[:, 30:] += 60
    path = tmp_path_factory.mktemp("engine") / "photo.png"
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path)
    return path
