"""An op's torch module as data: its class and constructor arguments, read from the stage's shape row.

The registry (:mod:`featcli.stages.registry`) describes each op's module declaratively (``OpDef.torch``, e.g.
``nn.Conv2d``, and ``OpDef.torch_args``, one :class:`TorchArg` per constructor argument); :func:`module_call`
turns that description and one stage's resolved configuration (the shape row's ``config``) into a
:class:`ModuleCall`. ``featcli shape --code`` writes the call as Python text
(:mod:`featcli.shape.code`) and the torch backend makes it
(:func:`featcli.engine.torch_backend.stage_module`), so the two agree on every argument and on the
``state_dict`` names (an uneven padding is a padding module before the module: ``s1.1.weight``).

Pure stdlib: no torch here, only names and values.

>>> from featcli.stages.registry import REGISTRY, Op
>>> call = module_call(REGISTRY[Op.CONV], {"in": 3, "out": 8, "k": [3, 3], "s": [1, 1], "p": [[1, 2], [1, 2]],
...                                        "d": [1, 1], "g": 1, "bias": True, "pm": "reflect"}, 3)
>>> call.cls, call.args, call.kwargs, call.pad
('Conv2d', (3, 8, (3, 3)), (), ('ReflectionPad2d', (1, 2, 1, 2)))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featcli.stages.registry import OpDef

#: ``TorchArg.key`` for the input's channel count (``BatchNorm2d``'s ``num_features``), which no config holds.
IN_CHANNELS = "@channels"
#: The padding module that applies an uneven padding of each padding mode (``padding_mode`` of a conv).
PAD_MODULES: Mapping[str, str] = {"zeros": "ZeroPad2d", "reflect": "ReflectionPad2d",
                                  "replicate": "ReplicationPad2d", "circular": "CircularPad2d"}


@dataclass(frozen=True)
class TorchArg:
    """One constructor argument of an op's torch module, in torch's signature order.

    ``key`` names the shape row's ``config`` entry that gives the value (:data:`IN_CHANNELS`: the input's
    channels; absent or empty: ``default`` is the value). A positional argument is always passed; a keyword
    argument is passed (and written by ``--code``) only where its value differs from ``default``, torch's own
    default, unless ``always``, and only together with the argument named by ``needs`` (``padding_mode`` means
    nothing without a ``padding``).
    """

    name: str  #: torch's parameter name
    key: str = ""
    default: Any = None
    positional: bool = False
    always: bool = False
    needs: str = ""


def pos(name: str, key: str) -> TorchArg:
    """A positional argument (always passed)."""
    return TorchArg(name, key, positional=True)


def kw(name: str, key: str, default: Any, *, always: bool = False, needs: str = "") -> TorchArg:
    """A keyword argument, left out at torch's ``default`` unless ``always``."""
    return TorchArg(name, key, default, always=always, needs=needs)


@dataclass(frozen=True)
class ModuleCall:
    """``torch.nn.<cls>(*args, **dict(kwargs))``, after ``torch.nn.<pad[0]>(pad[1])`` where ``pad`` is set.

    Pairs are tuples (``(3, 5)``); ``kwargs`` keep torch's signature order and hold only the arguments that
    differ from torch's defaults (or are always written), so the text and the module say the same.
    """

    cls: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    #: the padding module class and its ``(left, right, top, bottom)``: an uneven padding, applied before
    pad: tuple[str, tuple[int, int, int, int]] | None = None


def _plain(v: Any) -> Any:
    return tuple(_plain(x) for x in v) if isinstance(v, list | tuple) else v


def _is_default(v: Any, default: Any) -> bool:
    if isinstance(v, tuple) and not isinstance(default, tuple):
        return all(x == default for x in v)
    return bool(v == default)


def module_call(d: OpDef, config: Mapping[str, Any], in_channels: int) -> ModuleCall | None:
    """The module call of one stage of op ``d`` whose shape row has ``config``, or None when the op is not a
    ``torch.nn`` module (``abs``, ``magnitude``, ``save``, ``add``, ``cat``: ``OpDef.code`` says what it does).

    A per-side padding (``[[top, bottom], [left, right]]``, a conv's) is the module's ``padding`` where it is
    even, else a padding module of the stage's ``padding_mode`` before the module, which then pads nothing.
    """
    if not d.torch.startswith("nn."):
        return None
    values: dict[str, Any] = {}
    for a in d.torch_args:
        values[a.name] = in_channels if a.key == IN_CHANNELS else _plain(config.get(a.key, a.default))
    pad: tuple[str, tuple[int, int, int, int]] | None = None
    sides = values.get("padding")
    if isinstance(sides, tuple) and sides and isinstance(sides[0], tuple):
        (top, bottom), (left, right) = sides
        if top == bottom and left == right:
            values["padding"] = (top, left)
        else:
            pad = (PAD_MODULES[values.get("padding_mode", "zeros")], (left, right, top, bottom))
            values["padding"] = 0
    args: list[Any] = []
    kwargs: list[tuple[str, Any]] = []
    left_out: set[str] = set()
    for a in d.torch_args:
        v = values[a.name]
        if a.positional:
            args.append(v)
        elif a.always or not (_is_default(v, a.default) or a.needs in left_out):
            kwargs.append((a.name, v))
        else:
            left_out.add(a.name)
    return ModuleCall(d.torch[3:], tuple(args), tuple(kwargs), pad)
