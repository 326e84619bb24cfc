"""A PyTorch module as a model: ``package.module:attr`` or ``path/to/file.py:attr``, optional ``--weights``.

The attr is an ``nn.Module`` subclass, a factory returning a module (both called with no arguments) or a
module instance. Importing runs the module's code: it is the user's own installed code, and the ``--model``
help says so. Weights come through :mod:`featcli.io.checkpoints` (``weights_only=True`` or safetensors, the
refusals of every featcli weight file) and load strictly: a key the model lacks or needs is refused in one
line. Forward hooks on every leaf module (and on custom containers, whose output shows their own additions
and concatenations) feed the :class:`featcli.models.layers.Recorder`; a forward pre-hook asks the formula
engine for the output size first, so a layer over the memory budget is refused before it runs.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.errors import ModelError, WeightsError
from featcli.models.formula import LayerOp, pair, predict, spec_text
from featcli.models.layers import LayerFailure, Recorder

if TYPE_CHECKING:
    import torch

__all__ = ["first_channels", "load_module", "module_op", "run_module"]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _a(name: str) -> str:
    """``a dict``, ``an int``, ``None``: what a value is, in words."""
    return "None" if name == "NoneType" else f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _users(exc: BaseException) -> bool:
    """Whether ``exc``, raised by the user's code, is theirs to report as a failure: anything but Ctrl-C (and
    SIGTERM, which the CLI turns into it). ``SystemExit`` and bare ``BaseException`` subclasses included: a
    model that calls ``sys.exit`` must not end featcli with its status and no word."""
    return not isinstance(exc, KeyboardInterrupt)


def _import(target: str) -> Any:
    """The object ``target`` (``pkg.mod:attr`` or ``file.py:attr``) names; any import failure is one line."""
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise ModelError(f"--model {target!r}: expected module:attr (e.g. mypkg.nets:Net) or file.py:attr")
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise ModelError(f"--model {target!r}: file {where!r} not found")
            name = f"featcli_user_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has a loader
                raise ModelError(f"--model {target!r}: cannot import {where!r}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            sys.path.insert(0, str(path.parent.resolve()))  # its sibling modules import as they do for python
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.parent.resolve()))
        else:
            module = importlib.import_module(where)
    except ModelError:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's code may raise anything, SystemExit included
        if not _users(exc):
            raise
        raise ModelError(f"--model {target!r}: importing {where!r} failed: {_first_line(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            import torch.nn as nn

            known = sorted(k for k, v in vars(module).items()
                           if isinstance(v, type) and issubclass(v, nn.Module) and v.__module__ == module.__name__)
            hint = f"; its modules: {', '.join(known[:10])}" if known else ""
            raise ModelError(f"--model {target!r}: {where!r} has no attribute {attr!r}{hint}")
        obj = getattr(obj, part)
    return obj


def load_module(target: str) -> torch.nn.Module:
    """The ``nn.Module`` that ``target`` names, instantiated with no arguments, in eval mode."""
    import torch.nn as nn

    obj = _import(target)
    if not isinstance(obj, nn.Module):
        if not callable(obj):
            raise ModelError(f"--model {target!r} is {_a(type(obj).__name__)}, not an nn.Module class or factory")
        try:
            obj = obj()
        except BaseException as exc:  # noqa: BLE001 - the user's code may raise anything, SystemExit included
            if not _users(exc):
                raise
            raise ModelError(f"--model {target!r}: calling it with no arguments failed ({_first_line(exc)}); "
                             "featcli instantiates with no arguments: write a factory function that does") from None
        if not isinstance(obj, nn.Module):
            raise ModelError(f"--model {target!r} returned {_a(type(obj).__name__)}, not an nn.Module")
    return obj.eval()


def _strip_common(keys: list[str], wanted: set[str]) -> dict[str, str]:
    """Map each key to the model's name: as it is, or without a prefix all keys share (``model.``)."""
    if set(keys) & wanted or not keys:
        return {k: k for k in keys}
    first = keys[0].split(".", 1)[0] + "."
    if all(k.startswith(first) for k in keys):
        return {k: k[len(first):] for k in keys}
    return {k: k for k in keys}


def load_weights(model: torch.nn.Module, path: str, *, allow_torchscript: bool = False) -> None:
    """Load a state dict into ``model`` strictly, through featcli's safe readers."""
    from featcli.io.checkpoints import load_entries

    _, entries = load_entries(path, allow_torchscript=allow_torchscript)
    wanted = model.state_dict()
    names = _strip_common(list(entries), set(wanted))
    state = {names[k]: e for k, e in entries.items()}
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    wrong = [f"{k} {list(state[k].shape)} (model: {list(wanted[k].shape)})" for k in wanted
             if k in state and tuple(state[k].shape) != tuple(wanted[k].shape)]

    def few(xs: list[str]) -> str:
        return ", ".join(xs[:4]) + (f" and {len(xs) - 4} more" if len(xs) > 4 else "")

    problems = [f"missing {few(missing)}" if missing else "", f"unexpected {few(unexpected)}" if unexpected else "",
                f"wrong shape {few(wrong)}" if wrong else ""]
    if any(problems):
        raise WeightsError(f"{path}: the weights do not fit the model: {'; '.join(p for p in problems if p)}")
    model.load_state_dict({k: e.load() for k, e in state.items()}, strict=True)


def module_op(m: Any, in_shape: tuple[int, ...]) -> LayerOp | None:
    """The featcli stage of a torch layer, or None where the stage language cannot express it."""
    import torch.nn as nn

    four = len(in_shape) == 4
    if isinstance(m, nn.Conv2d):  # padding may be 'same' or 'valid', as in the stage language
        return LayerOp("conv", {"out": m.out_channels, "k": m.kernel_size, "s": m.stride, "p": m.padding,
                                "d": m.dilation, "g": m.groups, "bias": m.bias is not None, "pm": m.padding_mode})
    if isinstance(m, nn.ConvTranspose2d):
        return LayerOp("convt", {"out": m.out_channels, "k": m.kernel_size, "s": m.stride, "p": m.padding,
                                 "op": m.output_padding, "d": m.dilation, "g": m.groups, "bias": m.bias is not None})
    if isinstance(m, nn.MaxPool2d) and not m.return_indices:
        return LayerOp("maxpool", {"k": pair(m.kernel_size), "s": pair(m.stride or m.kernel_size),
                                   "p": m.padding, "d": m.dilation, "ceil": m.ceil_mode})
    if isinstance(m, nn.AvgPool2d) and m.divisor_override is None:
        return LayerOp("avgpool", {"k": pair(m.kernel_size), "s": pair(m.stride or m.kernel_size),
                                   "p": m.padding, "ceil": m.ceil_mode, "cip": m.count_include_pad})
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and not getattr(m, "return_indices", False):
        kind = "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
        o: Any = m.output_size
        size = (o, o) if isinstance(o, int) else tuple(o)
        if None in size:
            return None
        return LayerOp("gap" if kind == "avg" else "gmp") if size == (1, 1) else LayerOp(f"adaptive{kind}", {"o": size})
    if isinstance(m, nn.Linear):
        return LayerOp("linear", {"out": m.out_features, "bias": m.bias is not None})
    if isinstance(m, nn.Flatten) and four and m.start_dim == 1 and m.end_dim == -1:
        return LayerOp("flatten")
    if isinstance(m, nn.BatchNorm2d) and four:
        return LayerOp("bn", {"eps": float(m.eps)})
    if isinstance(m, nn.LeakyReLU):
        return LayerOp("leakyrelu", {"slope": float(m.negative_slope)})
    if isinstance(m, nn.PReLU) and (four or len(in_shape) == 2):
        return LayerOp("prelu", {"n": m.num_parameters})
    if isinstance(m, nn.Softmax) and m.dim == 1 and len(in_shape) in (2, 4):
        return LayerOp("softmax")
    if isinstance(m, (nn.Dropout, nn.Dropout2d)):
        return LayerOp("dropout", {"p": float(m.p)})
    if isinstance(m, nn.Upsample) and four and m.mode in ("nearest", "bilinear"):  # UpsamplingNearest2d too
        from featcli.models.formula import scales

        bilinear = m.mode == "bilinear"
        return LayerOp("upsample", {"o": m.size, "sf": None if m.size is not None else scales(m.scale_factor),
                                    "mode": m.mode, "ac": m.align_corners if bilinear else None,
                                    "rsf": m.recompute_scale_factor if m.size is None else None})
    if isinstance(m, nn.GELU):
        return LayerOp("gelu", {"approx": m.approximate})
    if isinstance(m, nn.GroupNorm) and four and m.affine:
        return LayerOp("groupnorm", {"g": m.num_groups, "eps": float(m.eps)})
    # A plain LayerNorm normalises the last dimensions; a LayerNorm2d subclass (ConvNeXt's, timm's) permutes the
    # channels last first: the stage's channels-first LayerNorm, where it normalises exactly C with weights.
    if isinstance(m, nn.LayerNorm) and type(m).__name__.lower().endswith("layernorm2d") and four and \
            tuple(m.normalized_shape) == (in_shape[1],) and m.elementwise_affine and m.bias is not None:
        return LayerOp("layernorm", {"eps": float(m.eps)})
    simple = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu",
              nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid"}
    for cls, name in simple.items():
        if isinstance(m, cls):
            return LayerOp(name)
    return None


def first_channels(model: torch.nn.Module) -> int | None:
    """The input channels the first Conv2d takes (what the image must have), or None without one."""
    import torch.nn as nn

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return None


def _flat(out: Any, key: str = "") -> list[tuple[str, Any]]:
    """Tensors of a (nested) output: ``[("", t)]``, or ``[("[0]", boxes), ("[1]", probs)]``..."""
    import torch

    if isinstance(out, torch.Tensor):
        return [(key, out)]
    if isinstance(out, (tuple, list)):
        return [x for i, v in enumerate(out) for x in _flat(v, f"{key}[{i}]")]
    if isinstance(out, dict):
        return [x for k, v in out.items() for x in _flat(v, f"{key}[{k}]")]
    return []


def _recorded(model: torch.nn.Module) -> list[tuple[str, Any]]:
    """Layers that get a row: every leaf, and containers other than Sequential/ModuleList/ModuleDict."""
    import torch.nn as nn

    plain = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
    return [(name, m) for name, m in model.named_modules()
            if name and (not list(m.children()) or not isinstance(m, plain))]


def _input_shape(args: tuple[Any, ...]) -> tuple[int, ...] | None:
    import torch

    return tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else None


def run_module(model: torch.nn.Module, x: torch.Tensor, recorder: Recorder,
               memo: dict[Any, Any] | None = None) -> list[torch.Tensor]:
    """Run ``model`` on ``x`` with hooks and the function mode of :mod:`featcli.models.calls` feeding
    ``recorder`` (modules and the functional calls between them); the model's output tensors. ``memo``: what
    a layer is as a stage, by module and input shape, and its parameter count, kept between the images of a
    run (the same model object). A forward that fails only under the function mode runs again on hooks alone
    (said in ``recorder.notes``; the run's later images take hooks alone at once, said too); one that fails either way
    raises the first run's :class:`featcli.models.layers.LayerFailure`, its failed row last in ``recorder``."""
    memo = {} if memo is None else memo
    if "calls failed" in memo:
        out = _run(model, x, recorder, memo, functional=False)
    else:
        try:
            return _run(model, x, recorder, memo, functional=True)
        except LayerFailure as exc:
            failure = exc
        hooks = Recorder(recorder.globs, recorder.budget, stats=recorder.stats)
        try:
            out = _run(model, x, hooks, memo, functional=False)
        except LayerFailure:
            raise failure from None
        recorder.take(hooks)
        memo["calls failed"] = failure.cause
    recorder.notes.append("modules only: the forward fails while its functional calls are recorded "
                          f"({memo['calls failed']})")
    return out


def _run(model: torch.nn.Module, x: torch.Tensor, recorder: Recorder, memo: dict[Any, Any], *,
         functional: bool) -> list[torch.Tensor]:
    """One forward of ``model`` on ``x``, recorded: module hooks, and the function mode where ``functional``;
    a failure is the failed row and its :class:`LayerFailure`."""
    import torch

    from featcli.models.calls import Calls, failure_of, mode_class
    from featcli.models.flow import Flow, constants

    handles: list[Any] = []
    # the data flow only where every call is seen: on hooks alone a functional x + y would pass unseen
    if functional and "constants" not in memo:
        memo["constants"] = constants(model)
    flow = Flow(x, memo["constants"]) if functional else None
    calls = Calls(recorder, flow)

    def stage(m: Any, in_shape: tuple[int, ...]) -> tuple[LayerOp | None, str | None]:
        key = (id(m), in_shape)
        if key not in memo:
            if len(memo) > 1 << 16:  # bounded: images of many sizes
                memo.clear()
            op = module_op(m, in_shape)
            memo[key] = (op, spec_text(op) if op is not None else None)
        return memo[key]  # type: ignore[no-any-return]

    def pre(name: str, m: Any, leaf: bool) -> Callable[..., None]:
        def hook(_: Any, args: tuple[Any, ...]) -> None:
            in_shape = _input_shape(args)
            calls.enter(name, m, leaf, in_shape)
            if in_shape is not None:
                _, spec = stage(m, in_shape)
                if spec is not None:
                    pred = predict(spec, in_shape)
                    if pred.shape is not None:
                        recorder.check(name, pred.shape)
        return hook

    def post(name: str, m: Any, leaf: bool) -> Callable[..., None]:
        def hook(_: Any, args: tuple[Any, ...], out: Any) -> None:
            in_shape = calls.stack[-1][3] if calls.stack else None
            calls.leave()
            parts = _flat(out)
            if not parts or (functional and not leaf and len(parts) == 1 and parts[0][1] is recorder.last_out
                             and not recorder.selected(name)):
                return  # a container whose output is its last row's (every call in it a row): only if --layers asks
            with torch._C.DisableTorchFunction():  # the recorder's own torch calls: no rows, no handler's cost
                op, spec = stage(m, in_shape) if in_shape is not None and len(parts) == 1 else (None, None)
                if ("params", id(m)) not in memo:
                    memo["params", id(m)] = sum(p.numel() for p in m.parameters(recurse=not leaf))
                outs = [t for _, t in parts]
                row = recorder.add(recorder.unique(name), type(m).__name__, outs, params=memo["params", id(m)],
                                   op=op, in_shape=in_shape, spec=spec,
                                   sources=flow.sources(args) if flow is not None and in_shape is not None else None)
                if flow is not None:
                    flow.note(outs, row.index, inner=not leaf)
        return hook

    for name, m in _recorded(model):
        leaf = not list(m.children())
        handles.append(m.register_forward_pre_hook(pre(name, m, leaf)))
        handles.append(m.register_forward_hook(post(name, m, leaf)))
    try:
        with torch.inference_mode():
            if functional:
                with mode_class()(calls):
                    out = model(x)
            else:
                out = model(x)
    except (ModelError, WeightsError):
        raise
    except BaseException as exc:  # noqa: BLE001 - the budget's BudgetError is a FeatcliError: re-raised below
        from featcli.errors import FeatcliError

        if isinstance(exc, FeatcliError) or not _users(exc):
            raise
        raise failure_of(calls.failing(), recorder, exc, tuple(x.shape)) from None
    finally:
        for h in handles:
            h.remove()
    tensors = [t for _, t in _flat(out)]
    if not tensors:
        raise ModelError(f"the model's forward returned {_a(type(out).__name__)} without a tensor; featcli "
                         "shows a model whose forward returns a tensor, or a tuple, list or dict of tensors")
    return tensors
