"""Start-up cost: typer >= 0.20 coerces every parameter through a pydantic TypeAdapter.

Importing pydantic costs more than a whole ``featcli shape`` computation (docs/benchmarks.md has the figures).
featcli's parameters are plain str/int/bool/enum/list[str], so :class:`LeanCommand` and :class:`LeanGroup`
(for a group's own ``--help``) give them a small stdlib coercion instead; anything it does not recognise, or
a typer without these internals, falls back to typer's own machinery. Every featcli command and group gets
these classes by default (:func:`featcli.cli.base.lean_by_default`); no command opts in.
"""

from __future__ import annotations

import enum
import typing
from typing import Any

from typer.core import TyperCommand, TyperGroup

from featcli.cli.helptext import label_param, polish, usage_pieces

try:
    from typer._click.exceptions import BadParameter
    from typer._coercion import RuntimeParam
except ImportError:  # pragma: no cover - older/newer typer: keep its own coercion
    RuntimeParam = None  # type: ignore[assignment,misc]


def _coerce_leaf(ann: Any, info: Any, value: Any) -> Any:
    """str / int (with min/max) / bool / Enum coercion with typer's own error wording."""
    if ann is str:
        return value if isinstance(value, str) else str(value)
    if ann is bool:
        if isinstance(value, bool):
            return value
        low = str(value).strip().lower()
        if low in ("1", "true", "t", "yes", "y", "on"):
            return True
        if low in ("0", "false", "f", "no", "n", "off"):
            return False
        raise ValueError(f"{value!r} is not a valid boolean")
    if ann is int:
        text = str(value)
        shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{shown!r} is not a valid integer") from None
        if info.min is not None and n < info.min:
            raise ValueError(f"{shown} is too small: it must be greater than or equal to {info.min}")
        if info.max is not None and n > info.max:
            raise ValueError(f"{shown} is too large: it must be less than or equal to {info.max}")
        return n
    assert isinstance(ann, type) and issubclass(ann, enum.Enum)
    if isinstance(value, ann):
        return value
    text = str(value)
    for member in ann:
        v = str(member.value)
        if v == text or (info.case_sensitive is False and v.lower() == text.lower()):
            return member
    choices = ", ".join(repr(str(m.value)) for m in ann)
    raise ValueError(f"{text!r} is not one of {choices}.")


def _lean_kind(ann: Any) -> Any:
    """The leaf type _coerce_leaf handles for ``ann`` (list[...] included), or None."""
    if typing.get_origin(ann) is list:
        (ann,) = typing.get_args(ann)
    if ann in (str, int, bool) or (isinstance(ann, type) and issubclass(ann, enum.Enum)):
        return ann
    return None


if RuntimeParam is not None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class _LeanParam(RuntimeParam):
        leaf: Any = None
        is_list: bool = False

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                if self.is_list:
                    items = value if isinstance(value, (list, tuple)) else [value]
                    return [_coerce_leaf(self.leaf, self.parameter_info, v) for v in items]
                return _coerce_leaf(self.leaf, self.parameter_info, value)
            except ValueError as exc:
                raise BadParameter(str(exc), ctx=ctx, param=param) from None


def leanify(param: Any) -> None:
    """Give ``param`` the stdlib coercion when its type is a plain one (before typer builds its own)."""
    desc = getattr(param, "type_descriptor", None)
    if RuntimeParam is None or desc is None or getattr(param, "_runtime_param", 1) is not None \
            or desc.file_annotation is not None:
        return
    leaf = _lean_kind(desc.annotation)
    if leaf is not None:
        param._runtime_param = _LeanParam(parameter_info=desc.parameter_info, annotation=desc.annotation,
                                          leaf=leaf, is_list=typing.get_origin(desc.annotation) is list)


class LeanCommand(TyperCommand):
    """A TyperCommand whose parameters skip pydantic when they are plain types (see above)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            leanify(param)
        polish(self)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return usage_pieces(super().collect_usage_pieces(ctx))

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        leanify(option)
        return label_param(option)


class LeanGroup(TyperGroup):
    """A TyperGroup whose own options and ``--help`` skip pydantic (its commands are :class:`LeanCommand`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            leanify(param)
        polish(self)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        leanify(option)  # no pydantic import just to read an unset --help flag
        label_param(option)
        return option
