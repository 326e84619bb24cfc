"""The stage language: ``OP[:key=value,...]`` specs parsed into :class:`Stage` through the registry.

Shared by ``featcli shape`` (pure arithmetic, :mod:`featcli.shape`) and ``featcli run`` (real tensors).
Pure stdlib: importing this module must stay instant (no torch, no numpy).

Canonical keys are the short ones (``k``, ``s``, ``p``, ``d``, ``g``, ``op``, ``pm``...); the long torch
names (``kernel_size``, ``stride``, ``padding``, ``padding_mode``...) are accepted as aliases, and are the
field names of the parsed parameters (:mod:`featcli.stages.params`).

>>> parse_stage("conv:out=5,k=3x5,s=1x2,p=2").params.kernel_size
(3, 5)
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from featcli.errors import SpecError
from featcli.stages.grammar import is_redacted, redacted, shorten, split_top_level
from featcli.stages.params import BranchSpec, Params
from featcli.stages.registry import COMMON_KEY_ALIASES, REGISTRY, Op, OpDef, lookup, valid_ops

#: How deep side branches may nest (``add:a(add:b(...))``): deeper is not a network, and the parser and the
#: walk recurse once per level (500 levels were a RecursionError that lost a whole ``shape -`` batch).
MAX_NESTING = 32


class SourcedText(str):
    """A stage text read from a stack file, with where it was read: errors name that place, never the text.

    >>> t = SourcedText("api_key=1", "secret.txt", 3, 5, 2)
    >>> t.origin
    "stack file 'secret.txt', line 3, column 5 (stage 2 of the file, 9 characters)"
    """

    __slots__ = ("path", "line", "column", "number")
    path: str
    line: int
    column: int
    number: int

    def __new__(cls, text: str, path: str, line: int, column: int, number: int) -> SourcedText:
        self = super().__new__(cls, text)
        self.path, self.line, self.column, self.number = path, line, column, number
        return self

    @property
    def origin(self) -> str:
        """Where the text was read, for messages."""
        return (f"stack file {shorten(self.path, 200)}, line {self.line}, column {self.column} "
                f"(stage {self.number} of the file, {len(self)} characters)")


@dataclass(frozen=True)
class Stage:
    """One parsed stage: the text as written, its canonical op and typed parameters."""

    text: str
    op: Op
    params: Params

    @property
    def definition(self) -> OpDef:
        return REGISTRY[self.op]


def valid_keys(op: Op) -> tuple[str, ...]:
    """The canonical keys of ``op`` (empty for ops that take none)."""
    return REGISTRY[op].keys


def is_op_name(token: str) -> bool:
    """True when ``token`` (``conv:...``, ``relu``, ``MaxPool2d``) starts with a stage op's name or alias."""
    return lookup(token.partition(":")[0]) is not None


def _bare_value_hint(d: OpDef, item: str, last: tuple[str, str] | None) -> str:
    """What an item without ``=`` probably meant: ``maxpool:2`` -> ``maxpool:k=2``; ``conv:w=gaussian:7,1.5``
    (the kernel's own ``,`` split the stage's items) -> ``w=gaussian(7,1.5)``."""
    if last and last[0] == "w" and ":" in last[1]:
        name, _, params = last[1].partition(":")
        return f" (a kernel's parameters go in parentheses inside a stage: w={name}({params},{item}))"
    if len(item) <= 20 and d.keys and not is_redacted():
        key = "k" if "k" in d.keys else d.keys[0]
        return f" (did you mean {d.name}:{key}={item}?)"
    return ""


def _key_hint(d: OpDef, key: str, value: str) -> str:
    """A misspelt key -> `` (did you mean s=2 (stride)?)``: the closest canonical key or alias of ``d``."""
    if not d.keys or is_redacted() or len(key) > 30:
        return ""
    names = {**{k: k for k in d.keys}, **{a: d.canonical_key(a) for a in _aliases(d)}}
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    if not close:
        return ""
    canon, shown = names[close[0]], _written(value.strip()[:20])
    alias = "" if canon == close[0] else f" ({close[0]})"
    return f" (did you mean {canon}={shown}{alias}?)"


def _aliases(d: OpDef) -> list[str]:
    """The key aliases that ``d`` accepts (its own and the common ones that name one of its keys)."""
    return [a for a in (*d.key_aliases, *COMMON_KEY_ALIASES) if d.canonical_key(a) in d.keys]


def stage_hint(text: str) -> str | None:
    """What a refused stage was probably meant to be, or None: ``conv:k=3;s=2`` -> keys are separated by
    ``,``; ``"conv:k=3"`` -> quotes are shell syntax (a ``featcli shape -`` line or a stack file has no shell).

    >>> stage_hint("conv:k=3;s=2")
    "keys are separated by ',', not ';': write conv:k=3,s=2"
    """
    text = text.strip()
    if ";" in text:
        fixed = text.replace(";", ",")
        if _parses(fixed):
            return f"keys are separated by ',', not ';': write {_written(fixed)}"
    bare = text.strip("'\"")
    if bare != text and bare and _parses(bare):
        return ("quotes are shell syntax, not part of a stage (lines read by featcli have no shell): "
                f"write {_written(bare)}")
    return None


def _written(text: str) -> str:
    """A suggested spelling as a message shows it: as it is when short and printable, else :func:`shorten`."""
    return text if len(text) <= 200 and text.isprintable() and not is_redacted() else shorten(text, 200)


def _parses(text: str) -> bool:
    try:
        _parse_cached(text)
    except SpecError:
        return False
    return True


def split_key_hint(texts: Sequence[str]) -> str | None:
    """``conv k=3`` (a space for ``:``) -> the message that says ``conv:k=3``, or None."""
    for prev, tok in zip(texts, texts[1:], strict=False):
        if _KEY_VALUE_RE.match(tok) and ":" not in tok.partition("=")[0] and "(" not in prev and ")" not in tok:
            sep = "," if ":" in prev else ":"
            return f"{shorten(tok)} is a key of the stage before it: write {_written(prev + sep + tok)} (no space)"
    return None


_KEY_VALUE_RE = re.compile(r"^[A-Za-z_]\w*=")


def _items(d: OpDef, body: str) -> dict[str, str]:
    items: dict[str, str] = {}
    last: tuple[str, str] | None = None
    for raw in split_top_level(body, ","):
        item = raw.strip()
        if not item:
            raise SpecError("empty item (a stray ',')")
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq:
            raise SpecError(f"expected key=value, got {shorten(item)}{_bare_value_hint(d, item, last)}")
        last = (d.canonical_key(key), value.strip())
        canon = d.canonical_key(key)
        if canon not in d.keys:
            known = f"valid keys: {', '.join(d.keys)}" if d.keys else "it takes no keys"
            raise SpecError(f"unknown key {shorten(key)} for {d.name}{_key_hint(d, key, value)}; {known}")
        if canon in items:
            raise SpecError(f"key {shorten(canon)} given twice")
        value = value.strip()
        if not value:
            raise SpecError(f"{shorten(key)[1:-1]}= has no value")
        items[canon] = value
    return items


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPENERS = {"(": ")", "[": "]", "{": "}"}


def split_stack(text: str) -> list[str]:
    """Split a stack at whitespace outside brackets: a side branch ``add:a(conv:k=1 bn)`` stays one stage.

    >>> split_stack("save:a conv:k=3,p=1  add:a(conv:k=1 bn)\\nrelu")
    ['save:a', 'conv:k=3,p=1', 'add:a(conv:k=1 bn)', 'relu']
    """
    return [text[a:b] for a, b in stack_spans(text)]


def stack_spans(text: str) -> list[tuple[int, int]]:
    """Where :func:`split_stack`'s stages are in ``text``: ``(start, end)`` offsets.

    >>> stack_spans("relu  add:a(bn relu)")
    [(0, 4), (6, 20)]
    """
    spans: list[tuple[int, int]] = []
    depth = 0
    start: int | None = None
    for i, ch in enumerate(text):
        if ch in _OPENERS:
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch.isspace() and depth == 0:
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


def join_split_stages(tokens: Sequence[str]) -> list[str]:
    """Command-line tokens as stages: a side branch split by the shell (``'add:a(conv:k=1' 'bn)'``) made whole.

    >>> join_split_stages(["save:a", "add:a(conv:k=1", "bn)", "relu"])
    ['save:a', 'add:a(conv:k=1 bn)', 'relu']
    """
    out: list[str] = []
    depth = 0
    for tok in tokens:
        if depth > 0:
            out[-1] += " " + tok
        else:
            out.append(tok)
        depth += sum(tok.count(c) for c in "([{") - sum(tok.count(c) for c in ")]}")
    return out


def _named(d: OpDef, body: str) -> Params:
    """``NAME`` or ``NAME(STAGE STAGE ...)`` -> a :class:`BranchSpec` with the side branch parsed."""
    name, paren, rest = body.partition("(")
    name = name.strip()
    if not _NAME_RE.fullmatch(name):
        shown = f"got {shorten(name)}" if name else "got none"
        raise SpecError(f"{d.name} needs a name: {d.name}:NAME (letters, digits, _), e.g. {d.example}; {shown}")
    spec = d.parse({"name": name})
    if not paren:
        return spec
    if d.op is Op.SAVE:
        raise SpecError(f"save takes no side branch; write the stages after it, or put them in the "
                        f"add:{name}(...) or cat:{name}(...) that uses it")
    if not rest.rstrip().endswith(")"):
        raise SpecError(f"the side branch of {d.name}:{name}(...) is not closed: add ')' at its end "
                        "(and quote the whole stage in the shell)")
    inner = split_stack(rest.rstrip()[:-1])
    if not inner:
        raise SpecError(f"empty side branch {d.name}:{name}(); write {d.name}:{name} for the tensor as saved")
    branch = []
    for t in inner:
        try:
            branch.append(_parse_cached(t))
        except SpecError as exc:
            raise SpecError(f"side branch stage {shorten(t, 200)}: {exc.message}") from None
    assert isinstance(spec, BranchSpec)
    return dataclasses.replace(spec, branch=tuple(branch))


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Stage:
    name, colon, body = text.partition(":")
    if "(" in name and lookup(name.partition("(")[0]) is not None:
        name, colon, body = name.partition("(")[0], ":", text[len(name.partition("(")[0]):]
    d = lookup(name)
    if d is None:
        raise SpecError(f"unknown op {shorten(name.strip())}; valid ops: {', '.join(valid_ops())}")
    body = body.strip()
    if d.named:
        if "(" in body and nesting(body) > MAX_NESTING:
            raise SpecError(f"side branches nest {nesting(body)} deep; at most {MAX_NESTING}")
        if body.startswith("("):
            raise SpecError(f"{d.name} needs a name before its side branch: {d.name}:NAME(STAGE ...)")
        return Stage(text=text, op=d.op, params=_named(d, body))
    if colon and body and not d.keys:
        raise SpecError(f"{d.name} takes no keys, got {shorten(body)}")
    return Stage(text=text, op=d.op, params=d.parse(_items(d, body) if body else {}))


def nesting(text: str, brackets: str = "()") -> int:
    """How deep the ``brackets`` (an opening and a closing character) of ``text`` nest.

    >>> nesting("a(b(c) d(e))"), nesting("[[1,2],[3]]", "[]")
    (2, 2)
    """
    opening, closing = brackets[0], brackets[1]
    depth = deepest = 0
    for ch in text:
        if ch == opening:
            depth += 1
            deepest = max(deepest, depth)
        elif ch == closing:
            depth -= 1
    return deepest


def _origin_error(text: SourcedText) -> SpecError:
    """The error of a stack file's stage that does not parse: where it is and why, never its bytes."""
    try:
        with redacted():
            _parse_cached(str(text).strip())
    except SpecError as exc:
        return SpecError(f"{text.origin}: not a valid stage: {exc.message}")
    return SpecError(f"{text.origin}: not a valid stage")  # pragma: no cover - it failed a moment ago


def parse_stage(text: str, index: int | None = None) -> Stage:
    """Parse one stage spec such as ``conv:out=8,k=3,p=1`` or ``maxpool:k=2``.

    Args:
        text: the spec as written.
        index: 1-based position in the stack, used in error messages only.

    Raises:
        SpecError: unknown op or key, bad value; the message names the stage and lists what is valid.
    """
    try:
        return _parse_cached(text.strip())
    except SpecError as exc:
        if isinstance(text, SourcedText):
            raise _origin_error(text) from None
        where = f"stage {index} " if index is not None else "stage "
        hint = stage_hint(text)
        raise SpecError(f"{where}{shorten(text.strip(), 200)}: {hint or exc.message}") from None


def parse_stages(texts: Sequence[str]) -> list[Stage]:
    """Parse a whole stack; stage indices in messages are 1-based."""
    return [parse_stage(t, i) for i, t in enumerate(texts, 1)]
