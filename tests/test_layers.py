"""The package's layers import downwards only, and no module outgrows one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import featcli

ROOT = Path(featcli.__file__).parent
#: Rank of each layer; a module may import its own sub-package or a lower rank (docs/DESIGN.md). ``io`` sits
#: just above ``stages``: a model file's metadata is a stack in the stage language (io/modelfile.py); ``models``
#: just below ``run``: a network is one of run's routes (run/network.py).
RANK = {"errors": 0, "enums": 0, "resources": 0, "stages": 1, "io": 1.5, "kernels": 2, "shape": 3, "render": 3,
        "engine": 4, "models": 4.5, "run": 5, "explain": 5, "train": 5, "cli": 6, "__main__": 7,
        "__init__": 0, "__version__": 0}
MAX_LINES = 400


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        out.append((".".join(rel.parts).removesuffix(".__init__"), path))
    return out


def test_layers_import_downwards_only() -> None:
    wrong = []
    for name, path in _modules():
        here = _layer(name)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] if node.module != "featcli" else [f"featcli.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if not t.startswith("featcli.") or t == "featcli":
                    continue
                there = _layer(t)
                upwards = RANK[there] > 0 if RANK[here] == 0 else RANK[there] >= RANK[here]
                if there != here and upwards:
                    wrong.append(f"{name} imports {t}")
    assert not wrong, "\n".join(wrong)


def test_every_layer_is_known_and_modules_stay_small() -> None:
    big = []
    for name, path in _modules():
        assert _layer(name) in RANK, name
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            big.append(f"{name}: {lines} lines")
    assert not big, "\n".join(big)
