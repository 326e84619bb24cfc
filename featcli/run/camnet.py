"""``featcli cam``'s view of a network: its candidate layers, one layer's maps as a gradient leaf, its scores.

The networks are opened by their routes' own openers (:func:`featcli.engine.network.open_model` for a featcli
model file, :func:`featcli.models.service.open_network` for ``module:attr``, ``.pt2`` and ``.onnx``), and their
images become inputs as ``featcli run`` makes them. What this adds is the one thing a CAM needs: the chosen
layer's output made a leaf tensor that requires its gradient (the network's parameters do not: nothing before
the layer is recorded for backward), so ``dy_c / dA`` is one ``torch.autograd.grad`` call. How each route
reaches a layer: a featcli stack through :meth:`featcli.engine.network.Network.forward`'s ``tap``; a module
through a forward hook (the leaf is a copy of the output and the network goes on with a copy of the leaf, so
an in-place op after the layer, ResNet's ``out += identity``, changes neither); a ``.pt2`` program through a
``torch.fx`` interpreter that replaces the node's value (nodes named as the layer table names them,
:func:`featcli.models.export_route.node_label`); an ONNX file has no gradients, and gives a layer's maps
through its layer recorder (Score-CAM only).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from featcli.errors import ModelError, UsageError
from featcli.io.images import LoadedImage, LoadOptions

__all__ = ["CamLayer", "CamNetwork", "open_cam_network"]


@dataclass(frozen=True)
class CamLayer:
    """A layer a map can be taken at: its name (as ``--layer`` takes it), type and output ``(C, H, W)``."""

    name: str
    type: str
    shape: tuple[int, int, int]

    @property
    def spatial(self) -> bool:
        return self.shape[1] * self.shape[2] > 1


def _layer(name: str, type_: str, shape: tuple[int, ...]) -> CamLayer | None:
    return CamLayer(name, type_, (int(shape[1]), int(shape[2]), int(shape[3]))) if len(shape) == 4 else None


def _scores(out: Any, model: str) -> Any:
    """The one ``(N, classes)`` score tensor of a network's output, or one clear line."""
    import torch

    from featcli.engine.predict import is_scores

    if isinstance(out, (list, tuple)) and len(out) == 1:
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or not is_scores((1, int(out.shape[1]))):
        what = f"shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"--model {model}: featcli cam needs a classifier's one score vector (N, classes); the "
                         f"network gives {what}")
    return out


def _leaf(kept: list[Any], grad: bool) -> Any:
    """The function that keeps a layer's output ``y`` as ``A`` (a copy: a later in-place op, ``out += identity``,
    must not change it; with ``grad`` a leaf that requires its gradient) and returns what the network goes on
    with (a copy of the leaf, which in-place ops may change while the gradient still reaches ``A``)."""

    def leaf(y: Any) -> Any:
        a = y.detach().clone().requires_grad_(grad)
        kept.append(a)
        return a.clone() if grad else y

    return leaf


def _kept(kept: list[Any], layer: CamLayer, model: str) -> Any:
    """The layer's output of this forward, or one line when the layer did not run."""
    if not kept:
        raise ModelError(f"--model {model}: layer {layer.name!r} did not run on this input")
    return kept[0]


def _call(fn: Any, x: Any, model: str) -> Any:
    """``fn(x)``: the user's network; its failure is one line."""
    from featcli.errors import FeatcliError

    try:
        return fn(x)
    except FeatcliError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's network may raise anything
        text = str(exc).strip().splitlines()
        raise ModelError(f"--model {model}: the network failed on input {list(x.shape)} ({type(exc).__name__}"
                         f"{': ' + text[0][:200] if text else ''})") from None


class CamNetwork:
    """A network as ``featcli cam`` runs it (see the module docstring); one per route below."""

    route = ""
    gradients = True

    def __init__(self, model: str, device: Any, classes: tuple[str, ...] | None) -> None:
        self.model, self.device, self.classes = model, device, classes

    def prepare(self, path: str) -> tuple[LoadedImage, Any]:
        """The image at ``path`` and the ``(1, C, H, W)`` float32 input tensor made from it."""
        raise NotImplementedError

    def layers(self, x: Any) -> list[CamLayer]:
        """Every layer with ``(N, C, H, W)`` output on input ``x``, in the order they finish."""
        raise NotImplementedError

    def forward(self, x: Any, layer: CamLayer, *, grad: bool) -> tuple[Any, Any]:
        """``(A, scores)``: the layer's output on ``x`` and the network's scores computed from it; with
        ``grad``, ``A`` is a leaf the scores' gradient can be taken at."""
        raise NotImplementedError

    def scores(self, xs: Any) -> Any:
        """The ``(B, classes)`` scores of the inputs ``xs`` ``(B, C, H, W)``, no gradient."""
        raise NotImplementedError

    def default_layer(self, x: Any) -> CamLayer:
        """The last layer with spatial maps (more than one position) before the head."""
        spatial = [layer for layer in self.layers(x) if layer.spatial]
        if not spatial:
            raise ModelError(f"--model {self.model}: no layer has spatial maps (N, C, H, W) with more than one "
                             "position; a class activation map needs one")
        return spatial[-1]

    def find_layer(self, x: Any, name: str) -> CamLayer:
        layers = self.layers(x)
        for layer in layers:
            if layer.name == name:
                return layer
        near = ", ".join(layer.name for layer in layers[-6:])
        raise UsageError(f"--layer {name!r}: no layer of that name has (N, C, H, W) maps; the last ones: {near} "
                         "(--layers lists them all)")


class StackNetwork(CamNetwork):
    """A featcli model file: its planned, trained stack; layers are stages, named by number."""

    route = "featcli"

    def __init__(self, model: str, device: Any, *, max_bytes: int | None, load: dict[str, Any]) -> None:
        from featcli.engine.network import open_model

        self.opened = open_model(model, max_bytes=max_bytes)
        super().__init__(model, device, self.opened.classes)
        self.net = self.opened.network().to(device)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.load: LoadOptions = self.opened.load_options(**load)

    def prepare(self, path: str) -> tuple[LoadedImage, Any]:
        from featcli.engine.backends import to_input
        from featcli.io.images import load_image

        image = load_image(path, self.load)
        return image, to_input(image, "torch", self.load.scale, self.device, self.load.normalize)

    def layers(self, x: Any) -> list[CamLayer]:
        rows = self.opened.plan.report.stages
        return [layer for r in rows if (layer := _layer(str(r.index), f"{r.op} ({r.spec})", r.out_shape))]

    def forward(self, x: Any, layer: CamLayer, *, grad: bool) -> tuple[Any, Any]:
        import torch

        kept: list[Any] = []
        index, leaf = int(layer.name), _leaf(kept, grad)

        def tap(i: int, y: Any) -> Any:
            return leaf(y) if i == index else y

        with torch.enable_grad() if grad else torch.no_grad():
            out = self.net(x, tap)
        return _kept(kept, layer, self.model), _scores(out, self.model)

    def scores(self, xs: Any) -> Any:
        import torch

        with torch.no_grad():
            return _scores(self.net(xs), self.model)


class ModuleNetwork(CamNetwork):
    """A PyTorch ``module:attr`` (``--weights``) or a ``.pt2`` program, opened as ``featcli run`` opens it."""

    def __init__(self, model: str, device: Any, *, request: Any, classes: tuple[str, ...] | None) -> None:
        from featcli.models.service import open_network

        super().__init__(model, device, classes)
        self.net = open_network(request)
        self.route = self.net.route
        self.module = self.net.model.module if self.route == "pt2" else self.net.model
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._layers: dict[tuple[int, ...], list[CamLayer]] = {}

    def prepare(self, path: str) -> tuple[LoadedImage, Any]:
        import torch

        image, x, _ = self.net.prepare(path)
        return image, torch.from_numpy(x).to(self.device)

    def layers(self, x: Any) -> list[CamLayer]:
        key = tuple(x.shape)
        if key not in self._layers:
            self._layers = {key: self._pt2_layers(x) if self.route == "pt2" else self._module_layers(x)}
        return self._layers[key]

    def _module_layers(self, x: Any) -> list[CamLayer]:
        """Every module (containers too) called once with one ``(N, C, H, W)`` output, as it finishes."""
        import torch

        seen: dict[str, list[Any]] = {}
        handles = []
        for name, m in self.module.named_modules():
            if name:
                def hook(_: Any, __: Any, out: Any, name: str = name, m: Any = m) -> None:
                    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None  # shapes only: bounded
                    seen.setdefault(name, []).append((type(m).__name__, shape))
                handles.append(m.register_forward_hook(hook))
        try:
            with torch.no_grad():
                _call(self.module, x, self.model)
        finally:
            for h in handles:
                h.remove()
        return [layer for name, calls in seen.items() if len(calls) == 1 and calls[0][1] is not None
                and (layer := _layer(name, calls[0][0], calls[0][1]))]

    def _pt2_layers(self, x: Any) -> list[CamLayer]:
        """The layer table's rows (:func:`featcli.models.export_route.run_pt2`) with one 4-D output."""
        result = self.net.forward(None, x.cpu().numpy())  # type: ignore[arg-type]
        names = [r.name for r in result.rows]
        return [layer for r in result.rows if len(r.shapes) == 1 and names.count(r.name) == 1
                and (layer := _layer(r.name, r.type, r.shapes[0]))]

    def forward(self, x: Any, layer: CamLayer, *, grad: bool) -> tuple[Any, Any]:
        import torch

        kept: list[Any] = []
        leaf = _leaf(kept, grad)
        with torch.enable_grad() if grad else torch.no_grad():
            if self.route == "pt2":
                out = _call(lambda t: self._interpret(t, layer.name, leaf), x, self.model)
            else:
                handle = self.module.get_submodule(layer.name).register_forward_hook(lambda _, __, y: leaf(y))
                try:
                    out = _call(self.module, x, self.model)
                finally:
                    handle.remove()
        return _kept(kept, layer, self.model), _scores(out, self.model)

    def _interpret(self, x: Any, name: str, leaf: Any) -> Any:
        import torch.fx

        from featcli.models.export_route import node_label

        class Tapped(torch.fx.Interpreter):
            def run_node(self, n: torch.fx.Node) -> Any:
                out = super().run_node(n)
                return leaf(out) if n.op == "call_function" and node_label(n) == name else out

        return Tapped(self.module).run(x)

    def scores(self, xs: Any) -> Any:
        import torch

        with torch.no_grad():
            return _scores(_call(self.module, xs, self.model), self.model)


class OnnxNetwork(CamNetwork):
    """An ONNX file through onnxruntime (the ONNX route's bounded runner): maps and scores, no gradients."""

    route = "onnx"
    gradients = False

    def __init__(self, model: str, device: Any, *, request: Any, classes: tuple[str, ...] | None) -> None:
        from featcli.models.service import open_network

        super().__init__(model, device, classes)
        self.net = open_network(request)
        self._rows: list[CamLayer] | None = None

    def prepare(self, path: str) -> tuple[LoadedImage, Any]:
        import torch

        image, x, _ = self.net.prepare(path)
        return image, torch.from_numpy(x)

    def _run(self, x: Any, layer: str | None) -> Any:
        globs = ("".join(f"[{c}]" if c in "*?[]" else c for c in layer),) if layer else ()
        self.net.req = dataclasses.replace(self.net.req, layers=globs)
        return self.net.forward(None, x.numpy())  # type: ignore[arg-type]

    def layers(self, x: Any) -> list[CamLayer]:
        if self._rows is None:
            rows = self._run(x, None).rows
            names = [r.name for r in rows]
            self._rows = [layer for r in rows if len(r.shapes) == 1 and names.count(r.name) == 1
                          and (layer := _layer(r.name, r.type, r.shapes[0]))]
        return self._rows

    def forward(self, x: Any, layer: CamLayer, *, grad: bool) -> tuple[Any, Any]:
        import torch

        result = self._run(x, layer.name)
        (a,) = result.kept[layer.name]
        return torch.from_numpy(a), _scores(torch.from_numpy(result.outputs[0]), self.model)

    def scores(self, xs: Any) -> Any:
        import torch

        self.net.req = dataclasses.replace(self.net.req, layers=())
        return torch.cat([_scores(torch.from_numpy(self.net.forward(None, x[None].numpy()).outputs[0]),  # type: ignore[arg-type]
                                  self.model) for x in xs.contiguous()])


def open_cam_network(model: str, *, weights: str | None, labels: str | None, device: Any, max_bytes: int | None,
                     load: LoadOptions, resize: Any = None, size: tuple[int, int] | None = None) -> CamNetwork:
    """Open ``model`` on its route. ``load``: how a network that is no featcli model file gets its input;
    a featcli model file keeps its recorded loading (``resize`` and ``load.max_pixels`` override)."""
    from featcli.models.service import ModelRequest, read_labels, route_of

    route = route_of(model)
    if route == "featcli":
        if labels is not None:
            raise UsageError("--labels applies to networks that are no featcli model file; a model file keeps "
                             "its class names")
        over: dict[str, Any] = {"max_pixels": load.max_pixels}
        if resize is not None:
            over["resize"] = resize
        return StackNetwork(model, device, max_bytes=max_bytes, load=over)
    classes = read_labels(labels) if labels is not None else None
    request = ModelRequest(model=model, weights=weights, size=size, load=load, device=str(device),
                           max_bytes=max_bytes, labels=classes)
    if route == "onnx":
        return OnnxNetwork(model, device, request=request, classes=classes)
    return ModuleNetwork(model, device, request=request, classes=classes)
