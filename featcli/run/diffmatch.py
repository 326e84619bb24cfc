"""Which layer of side A is which layer of side B in ``featcli diff``: by name where both have names, else by
order and shape.

Each route names its layers its own way; :func:`key_of` brings them to one module path: an ONNX node
``/layer1/layer1.0/conv1/Conv`` and a ``.pt2`` node ``layer1.0.conv1:conv2d`` both become ``layer1.0.conv1``, the
PyTorch route's row is already that path, a featcli model file's stage N is ``sN`` (the module ``featcli shape
--code`` writes for it), and a call outside any module (``/Abs``, ``abs_1``) is its op (``abs``). A stage stack's
stages have no names. :func:`match` pairs the keys that each side has exactly once (in the same order on both
sides: a pair that would cross an earlier one is dropped; a name the other side does not have tries the next
reading of it, :func:`candidates`) and then, between two such anchors, the remaining
layers by order and shape: the pairing that keeps the order and matches the most layers, equal shapes counting
double (a longest common subsequence). A layer an exporter folded into the one before it (a batch norm into its
conv: the ONNX node's output is the pair's) makes the named layer's partner the group's last layer (``fused``).
What is left on either side is unmatched and listed, never dropped.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = ["Match", "Matching", "candidates", "key_of", "keys", "match"]

_SUFFIX = re.compile(r"_\d+$")
#: Layers an exporter folds into the layer before them or drops (their types, lower case, contain one of these).
_FOLDABLE = ("norm", "bn", "dropout", "identity")


def _op(text: str) -> str:
    """A node's op: its number and the underscore of an in-place call gone (``relu__1``, ``add_``: ``relu``, ``add``).

    >>> _op("relu__1"), _op("add_"), _op("conv2d_3"), _op("Conv")
    ('relu', 'add', 'conv2d', 'conv')
    """
    return _SUFFIX.sub("", text).rstrip("_").lower() or text.lower()


def _joined(path: str, scope: str) -> str:
    """An ONNX scope added to a module path: the exporter writes a scope as the module's own name (``conv1``), its
    path from the root (``layer1.0`` under ``layer1``) or from its parent (``downsample.0`` under ``downsample``);
    the part it repeats is not added twice.

    >>> _joined("layer1", "layer1.0"), _joined("layer1.0", "conv1"), _joined("layer1.0.downsample", "downsample.0")
    ('layer1.0', 'layer1.0.conv1', 'layer1.0.downsample.0')
    """
    have, new = path.split(".") if path else [], scope.split(".")
    for k in range(min(len(have), len(new) - 1), 0, -1):  # the longest end of the path that starts the scope
        if have[-k:] == new[:k]:
            return ".".join(have + new[k:])
    return ".".join(have + new)


def candidates(kind: str, name: str) -> list[str]:
    """The module paths a layer ``name`` of a side of ``kind`` may stand for, the most specific first (none for a
    stack's stage). An ONNX node or a ``.pt2`` node under a module is a call in its ``forward``
    (``/layer1/layer1.0/Add``: ``layer1.0.add``) or that module's output (``/s1/Conv``: ``s1``); a scope the ONNX
    exporter numbered (``relu_1``) is the module called again (``relu#2``, as the PyTorch route names it)."""
    if kind == "stack":
        return []
    if kind == "onnx":
        parts = [p for p in name.split("/") if p]
        if not parts:
            return []
        op = _op(parts[-1])
        path = ""
        for comp in parts[:-1]:
            path = _joined(path, comp)
        if not path:
            return [op]
        again = _SUFFIX.search(path)
        numbered = [f"{path[:again.start()]}#{int(again.group()[1:]) + 1}"] if again else []
        return [f"{path}.{op}", path, *numbered]
    if kind == "pt2":
        path, sep, node = name.partition(":")
        return [f"{path}.{_op(node)}", path] if sep else [_op(path)]
    return [name]


def key_of(kind: str, name: str, other: Collection[str] = ()) -> str | None:
    """The module path of a layer ``name`` of a side of ``kind`` against the ``other`` side's names: its first
    candidate that side may have, else its module (None: a stack's stage has none).

    >>> key_of("onnx", "/layer1/layer1.0/conv1/Conv"), key_of("pt2", "layer1.0.conv1:conv2d")
    ('layer1.0.conv1', 'layer1.0.conv1')
    >>> key_of("onnx", "/layer1/layer1.0/Add", {"layer1.0.add"}), key_of("onnx", "/b/relu_1/Relu", {"b.relu#2"})
    ('layer1.0.add', 'b.relu#2')
    >>> key_of("onnx", "/Abs"), key_of("pt2", "abs_1"), key_of("torch", "s1"), key_of("featcli", "s1")
    ('abs', 'abs', 's1', 's1')
    """
    found = candidates(kind, name)
    if not found:
        return None
    return next((c for c in found if c in other), found[1] if len(found) > 1 else found[0])


def keys(kind: str, names: Sequence[str], other: Sequence[list[str]]) -> list[str | None]:
    """Each layer's key against the other side's candidates: its first candidate the other side may have (else
    its first), the k-th layer of one key numbered ``#k`` as the PyTorch route numbers a module called again."""
    theirs = {c for cands in other for c in cands}
    out: list[str | None] = []
    seen: Counter[str] = Counter()
    for n in names:
        key = key_of(kind, n, theirs)
        if key is not None and "#" not in key:
            seen[key] += 1
            key = key if seen[key] == 1 else f"{key}#{seen[key]}"
        out.append(key)
    return out


@dataclass(frozen=True)
class Match:
    """Row ``a`` of side A (0-based) is row ``b`` of side B, found by ``how`` (``name``, ``order``, or ``fused``: a
    name pair moved to the end of the group one side folded into one layer)."""

    a: int
    b: int
    how: str


@dataclass(frozen=True)
class Matching:
    """The pairs in A's order and the rows of each side that have no partner."""

    pairs: tuple[Match, ...]
    only_a: tuple[int, ...]
    only_b: tuple[int, ...]


def _anchors(keys_a: Sequence[str | None], keys_b: Sequence[str | None]) -> list[tuple[int, int]]:
    """Pairs of rows whose key each side has exactly once, in A's order, none crossing an earlier one."""
    count_a, count_b = Counter(k for k in keys_a if k), Counter(k for k in keys_b if k)
    where_b = {k: i for i, k in enumerate(keys_b) if k and count_b[k] == 1}
    out: list[tuple[int, int]] = []
    for i, k in enumerate(keys_a):
        if k and count_a[k] == 1 and k in where_b and (not out or where_b[k] > out[-1][1]):
            out.append((i, where_b[k]))
    return out


def _by_order(shapes_a: Sequence[tuple[int, ...]], shapes_b: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
    """The order-keeping pairing of two runs of layers with the most weight: 2 for equal shapes, 1 for shapes of
    the same rank, none else (so a layer whose shape differs is still paired with its counterpart)."""
    n, m = len(shapes_a), len(shapes_b)
    if not n or not m:
        return []

    def weight(i: int, j: int) -> int:
        sa, sb = shapes_a[i], shapes_b[j]
        return 2 if sa == sb else 1 if len(sa) == len(sb) else 0

    best = [[0] * (m + 1) for _ in range(n + 1)]  # layers, not pixels: a few hundred a side
    for i in range(n - 1, -1, -1):
        row, below = best[i], best[i + 1]
        for j in range(m - 1, -1, -1):
            w = weight(i, j)
            row[j] = max(below[j], row[j + 1], below[j + 1] + w if w else 0)
    out, i, j = [], 0, 0
    while i < n and j < m:
        w = weight(i, j)
        if w and best[i][j] == best[i + 1][j + 1] + w:
            out.append((i, j))
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1
    return out


def _fused(pairs: list[Match], shapes_a: Sequence[tuple[int, ...]], shapes_b: Sequence[tuple[int, ...]],
           types_a: Sequence[str], types_b: Sequence[str]) -> list[Match]:
    """Pairs by name moved to the end of a fused group: where one side's named layer is followed by unmatched
    layers of its shape that an exporter folds or drops (a batch norm, a dropout) and the other side goes straight
    on, the other side's layer is the whole group (torch's ONNX export folds a batch norm into the conv before
    it), so it is paired with the group's last layer; the layers before it stay unmatched."""
    used_a, used_b = {p.a for p in pairs}, {p.b for p in pairs}

    def folds(i: int, used: set[int], shapes: Sequence[tuple[int, ...]], types: Sequence[str], start: int) -> bool:
        return i < len(shapes) and i not in used and shapes[i] == shapes[start] and \
            any(w in types[i].lower() for w in _FOLDABLE)

    out = []
    for p in pairs:
        a, b = p.a, p.b
        if p.how == "name":
            b_on = b + 1 >= len(shapes_b) or b + 1 in used_b
            while b_on and folds(a + 1, used_a, shapes_a, types_a, p.a):
                a += 1
            a_on = a == p.a and (a + 1 >= len(shapes_a) or a + 1 in used_a)
            while a_on and folds(b + 1, used_b, shapes_b, types_b, p.b):
                b += 1
        out.append(p if (a, b) == (p.a, p.b) else Match(a, b, "fused"))
    return out


def match(kind_a: str, names_a: Sequence[str], shapes_a: Sequence[tuple[int, ...]],
          kind_b: str, names_b: Sequence[str], shapes_b: Sequence[tuple[int, ...]],
          types_a: Sequence[str] | None = None, types_b: Sequence[str] | None = None) -> Matching:
    """Pair the layers of two sides (see the module docstring); ``types_a``/``types_b``: the layers' types (a
    module class, an ONNX op, an aten call, a stage op), which say what an exporter may have folded."""
    cands_a = [candidates(kind_a, n) for n in names_a]
    cands_b = [candidates(kind_b, n) for n in names_b]
    keys_a, keys_b = keys(kind_a, names_a, cands_b), keys(kind_b, names_b, cands_a)
    anchors = _anchors(keys_a, keys_b)
    pairs: list[Match] = []
    start_a = start_b = 0
    for ia, ib in [*anchors, (len(names_a), len(names_b))]:
        gap = _by_order(shapes_a[start_a:ia], shapes_b[start_b:ib])
        pairs.extend(Match(start_a + i, start_b + j, "order") for i, j in gap)
        if ia < len(names_a):
            pairs.append(Match(ia, ib, "name"))
        start_a, start_b = ia + 1, ib + 1
    pairs = _fused(pairs, shapes_a, shapes_b, types_a or [""] * len(names_a), types_b or [""] * len(names_b))
    used_a, used_b = {p.a for p in pairs}, {p.b for p in pairs}
    return Matching(tuple(pairs), tuple(i for i in range(len(names_a)) if i not in used_a),
                    tuple(j for j in range(len(names_b)) if j not in used_b))
