"""``python -m benchmarks.coverage``: the share of layer rows the formula engine predicts on real architectures.

Each network of :data:`benchmarks.archs.ARCHS` runs once through featcli's module route
(:func:`featcli.models.service.open_network`, as ``featcli run IMAGE --model benchmarks.archs:NAME --size
SxS``) on one image; its rows are counted by the check column: ✓ (the formula engine's shape equals the
real one), ✗ (it does not: a bug), ``-`` (no prediction: the layer has no stage). Printed as markdown: the
table per architecture, the ``-`` rows grouped by layer type (a custom container's row, whose output
includes its own additions, apart from a leaf layer's), every ✗ row in full, and the functional ops each
``forward`` calls outside any leaf module (``out += identity``, ``torch.cat``, ``F.interpolate``...), which
the module route's hooks do not see as rows at all.

``--only NAME`` (repeatable) picks architectures; ``--image PATH`` the image (default ``sample:photo``);
``--route pt2`` exports each network with ``torch.export`` and counts the ``.pt2`` route's rows instead (every
call a row, the additions and products included; two minutes on 2 CPUs).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.archs import ARCHS, Arch

__all__ = ["Coverage", "functional_ops", "main", "measure"]


@dataclass
class Coverage:
    """One architecture's rows by check mark, what its ``-`` rows are and the ops its forwards call unseen."""

    name: str
    size: int
    params: int
    rows: int
    ok: int
    bad: int
    none: int
    dash: Counter[tuple[str, bool]] = field(default_factory=Counter)  # (type, container) -> rows
    bad_rows: list[str] = field(default_factory=list)
    unseen: Counter[str] = field(default_factory=Counter)  # functional op -> calls outside leaf modules

    @property
    def share(self) -> float:
        return self.ok / self.rows if self.rows else 0.0


def functional_ops(model: Any, x: Any) -> Counter[str]:
    """The torch functions and tensor methods returning a tensor that ``model(x)`` calls outside every leaf
    module (in a forward of its own or of a container): what the module route records no row for."""
    import torch
    from torch.overrides import TorchFunctionMode

    depth = [0]

    class Count(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.calls: Counter[str] = Counter()

        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            if depth[0] == 0 and isinstance(out, torch.Tensor):
                self.calls[getattr(func, "__name__", str(func)).strip("_")] += 1
            return out

    def enter(*_: Any) -> None:
        depth[0] += 1

    def leave(*_: Any) -> None:
        depth[0] -= 1

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [h for m in leaves for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    counter = Count()
    try:
        with torch.inference_mode(), counter:
            model(x)
    finally:
        for h in handles:
            h.remove()
    return counter.calls


def measure(arch: Arch, image: str, route: str = "module", folder: str | None = None) -> Coverage:
    """Run ``arch`` on ``image`` through featcli's module route (``route="module"``) or, exported by
    ``torch.export`` into ``folder``, its ``.pt2`` route (``"pt2"``: every call a row), and count its rows."""
    from featcli.models.service import ModelRequest, open_network

    target = arch.target
    if route == "pt2":
        import torch

        target = str(Path(folder or ".") / f"{arch.name}.pt2")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = torch.rand(1, 3, arch.size, arch.size)
            torch.export.save(torch.export.export(arch.factory(), (x,)), target)
    net = open_network(ModelRequest(model=target, size=(arch.size, arch.size) if route == "module" else None))
    loaded, x, _ = net.prepare(image)
    rows = net.forward(loaded, x).rows
    containers = {type(m).__name__ for m in net.model.modules() if list(m.children())} if route == "module" else set()
    marks = Counter(r.ok for r in rows)
    cov = Coverage(arch.name, arch.size, net.params, len(rows), marks[True], marks[False], marks[None])
    cov.dash.update((r.type, r.type in containers) for r in rows if r.ok is None)
    cov.bad_rows = [f"{r.name} ({r.type}): `{r.spec}` on the real input predicts "
                    f"{'x'.join(map(str, r.predicted)) if r.predicted else r.refusal}, real "
                    f"{', '.join('x'.join(map(str, s)) for s in r.shapes)}" for r in rows if r.ok is False]
    if route == "pt2":
        return cov
    cov.unseen = functional_ops(net.model, __import__("torch").from_numpy(x))
    return cov


def table(covs: Sequence[Coverage], route: str = "module") -> str:
    """The markdown report of :func:`measure`'s results on ``route``."""
    out = [f"{route} route:", "",
           "| architecture | input | params | rows | ✓ | ✗ | - | ✓ share | functional calls in forward (rows) |",
           "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for c in covs:
        ops = ", ".join(f"{op} {n}" for op, n in c.unseen.most_common())
        out.append(f"| {c.name} | {c.size}x{c.size} | {c.params:,} | {c.rows} | {c.ok} | {c.bad} | {c.none} | "
                   f"{c.share:.1%} | {ops or '-'} |")
    rows, ok = sum(c.rows for c in covs), sum(c.ok for c in covs)
    out.append(f"| **all** | | | {rows} | {ok} | {sum(c.bad for c in covs)} | {sum(c.none for c in covs)} | "
               f"{ok / rows if rows else 0:.1%} | |")
    dash: Counter[tuple[str, bool]] = Counter()
    where: dict[tuple[str, bool], list[str]] = {}
    for c in covs:
        dash.update(c.dash)
        for key in c.dash:
            where.setdefault(key, []).append(c.name)
    out += ["", "`-` rows by layer type:", "", "| type | kind | rows | in |", "|---|---|---:|---|"]
    kinds = {True: "container", False: "leaf" if route == "module" else "call"}
    out += [f"| {t} | {kinds[box]} | {n} | {', '.join(where[t, box])} |"
            for (t, box), n in dash.most_common()]
    bad = [f"- {c.name}: {b}" for c in covs for b in c.bad_rows]
    out += ["", "✗ rows:" if bad else "✗ rows: none", *bad]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coverage", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(ARCHS), help="an architecture (repeatable)")
    parser.add_argument("--image", default="sample:photo", help="the image (default sample:photo)")
    parser.add_argument("--route", choices=("module", "pt2"), default="module",
                        help="the module route (default) or each network exported by torch.export as a .pt2")
    args = parser.parse_args(argv)
    from featcli.resources import resolve_sample

    image = resolve_sample(args.image)
    with tempfile.TemporaryDirectory() as folder:
        covs = [measure(ARCHS[name], image, args.route, folder) for name in (args.only or ARCHS)]
    print(table(covs, args.route))
    return 1 if any(c.bad for c in covs) else 0


if __name__ == "__main__":
    sys.exit(main())
