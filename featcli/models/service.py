"""``featcli run IMAGE --model MODEL``: one image through a whole network, every layer in the table.

:func:`run_model` picks the route from the model's name (:func:`route_of`), loads the model, turns the image
into the tensor the model takes (:func:`model_input`: featcli's loader and loading options, then the model's
channels and size), runs it with a :class:`featcli.models.layers.Recorder` and returns a
:class:`ModelResult`: the rows, the kept maps, the outputs and, for a score vector, the top-k prediction
(:mod:`featcli.engine.predict`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featcli.engine.predict import Prediction, is_scores, top_k
from featcli.enums import Channels
from featcli.errors import ModelError, UsageError
from featcli.io.images import LoadedImage, LoadOptions, load_image
from featcli.models.layers import LayerFailure, LayerRecord, Recorder

__all__ = ["ModelRequest", "ModelResult", "Network", "model_input", "open_network", "read_labels", "route_of",
           "run_model"]

ROUTES = {"torch": "PyTorch module", "onnx": "ONNX via onnxruntime", "pt2": "torch.export program"}


def route_of(model: str) -> str:
    """``featcli`` (a featcli model file), ``onnx``, ``pt2`` or ``torch`` (``module:attr``, ``file.py:attr``)."""
    suffix = Path(model).suffix.lower()
    if suffix == ".safetensors":
        return "featcli"
    if suffix in (".onnx", ".pt2"):
        return suffix[1:]
    if ":" in model:
        return "torch"
    raise UsageError(f"--model {model!r}: expected a featcli model file (.safetensors), a PyTorch module:attr or "
                     "file.py:attr, an .onnx file or a .pt2 export")


@dataclass(frozen=True)
class ModelRequest:
    """What to run: the model, its weights, the layers to keep, and how the image becomes its input."""

    model: str
    weights: str | None = None
    layers: tuple[str, ...] = ()
    size: tuple[int, int] | None = None
    load: LoadOptions = field(default_factory=LoadOptions)
    device: str = "cpu"
    max_bytes: int | None = None
    allow_torchscript: bool = False
    labels: tuple[str, ...] | None = None
    top: int = 5
    stats: bool = True  #: measure every layer's values (``featcli top`` measures only its layer, its own way)


@dataclass(eq=False)
class ModelResult:
    """One image through one model."""

    model: str
    route: str
    image: LoadedImage
    input_shape: tuple[int, ...]
    rows: list[LayerRecord]
    kept: dict[str, list[Any]]
    last_maps: tuple[str, list[Any]] | None
    outputs: list[Any]
    params: int
    notes: list[str] = field(default_factory=list)
    prediction: list[Prediction] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  #: ``normalize``: the input's normalisation, if any

    @property
    def macs(self) -> int:
        return sum(r.macs or 0 for r in self.rows)

    def record(self, files: Sequence[str] = ()) -> dict[str, Any]:
        return {"path": self.image.header.path, "model": self.model, "route": self.route,
                "input": list(self.input_shape), "params": self.params, "macs": self.macs,
                "layers": [r.record() for r in self.rows], "outputs": [list(o.shape) for o in self.outputs],
                "notes": self.notes, "prediction": [p.record() for p in self.prediction], "files": list(files),
                **self.extra}


def read_labels(path: str) -> tuple[str, ...]:
    """Class names: one per line, or a JSON list of strings."""
    p = Path(path)
    try:
        if p.stat().st_size > 16 << 20:
            raise UsageError(f"--labels {path!r}: over 16 MiB; expected one class name per line")
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--labels {path!r}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--labels {path!r}: not UTF-8 text; expected one class name per line") from None
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--labels {path!r}: not a JSON list ({exc.msg})") from None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UsageError(f"--labels {path!r}: expected a JSON list of strings")
        return tuple(names)
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def model_input(path: str, load: LoadOptions, dims: Sequence[int | None], size: tuple[int, int] | None,
                notes: list[str], recorder: Recorder | None = None) -> tuple[LoadedImage, Any]:
    """The image at ``path`` as the ``(1, C, H, W)`` float32 NumPy array a model of input ``dims`` takes.

    Channels: a model of 1 or 3 channels gets the image as gray or RGB (featcli's ``--channels`` conversion);
    size: ``size`` (``--size``) or the model's static ``(H, W)``, fitted as ``load.resize`` says
    (:func:`featcli.io.fit.fit`: a centre crop by default); values: ``load.scale``, then ``load.normalize``.
    What was changed is said in ``notes``; an input the model cannot take is refused naming the shape it
    expects, and one over the ``recorder``'s memory budget before it is made (a file may declare an
    81-megapixel input). No torch: the ONNX route runs without it.
    """
    from featcli.engine.numpy_backend import HWC
    from featcli.io.fit import fitted, oriented

    want = "x".join("?" if d is None else str(d) for d in dims)
    n, c, h, w = dims
    if n not in (None, 1):
        raise ModelError(f"the model takes batches of {n} ({want}); featcli feeds one image")
    if size is not None and h is not None and w is not None and size != (h, w):
        raise ModelError(f"--size {size[0]}x{size[1]}: the model takes input {want}")
    target = size or ((h, w) if h is not None and w is not None else None)
    if target is not None and recorder is not None:
        recorder.check("input", (1, c or 3, *target))
    load = dataclasses.replace(load, size=target)
    image = load_image(path, load)
    have = image.array.shape[2]
    if c is not None and c != have:
        if c not in (1, 3):
            raise ModelError(f"the model takes input {want}; the image has {have} channels")
        image = load_image(path, dataclasses.replace(load, channels=Channels.GRAY if c == 1 else Channels.RGB))
        notes.append(f"input converted to {'gray' if c == 1 else 'RGB'}: the model takes {c} channel"
                     f"{'s' if c != 1 else ''}")
    if recorder is not None:
        recorder.check("input", (1, *image.array.shape[2:], *image.array.shape[:2]))
    w, h = oriented(image.header.size, image.header.orientation)
    source = (h, w)
    if target is not None and source != target:
        notes.append(f"input resized from {fitted(source, target, load.resize)}")
    x = HWC(image.array, image.value_max, load.scale).planes()
    if load.normalize is not None:
        x = load.normalize.apply(x)
        notes.append(f"input normalised: {load.normalize}")
    return image, x


def _tensor(x: Any) -> Any:
    """The input array as a torch tensor (sharing its memory)."""
    import torch

    return torch.from_numpy(x)


class Network:
    """A network loaded once (:func:`open_network`) and run on any number of images: :meth:`prepare` makes an
    image its input tensor (a loader thread may call it), :meth:`forward` runs it with a fresh recorder."""

    def __init__(self, req: ModelRequest, route: str, model: Any, dims: Sequence[int | None], params: int) -> None:
        self.req, self.route, self.model, self.dims, self.params = req, route, model, tuple(dims), params
        self.notes = ["the node-by-node output equals the exported program's"] if route == "pt2" else []
        self._memo: dict[Any, Any] = {}  # a module's layers as stages, by input shape (torch_route.run_module)

    def recorder(self) -> Recorder:
        from featcli.engine.plan import memory_budget

        return Recorder(self.req.layers, memory_budget(self.req.max_bytes), stats=self.req.stats)

    def prepare(self, path: str) -> tuple[LoadedImage, Any, list[str]]:
        """The image at ``path``, the input tensor made from it and what was changed on the way (notes)."""
        notes: list[str] = []
        image, x = model_input(path, self.req.load, self.dims, self.req.size, notes, self.recorder())
        return image, x, notes

    def forward(self, image: LoadedImage, x: Any, notes: Sequence[str] = ()) -> ModelResult:
        """Run the network on ``x`` (from :meth:`prepare`), every layer recorded."""
        recorder = self.recorder()
        try:
            outputs = self._run(x, recorder)
        except LayerFailure as exc:  # the table up to the failed layer goes with the error (self.notes: a run's)
            exc.partial = ModelResult(self.req.model, self.route, image, tuple(x.shape), recorder.rows, {}, None, [],
                                      self.params, [*notes, *recorder.notes])
            raise
        recorder.check_globs()
        prediction = []
        if len(outputs) == 1 and is_scores(tuple(outputs[0].shape)):
            prediction = top_k(outputs[0].reshape(-1).tolist(), self.req.labels, self.req.top)
        return ModelResult(self.req.model, self.route, image, tuple(x.shape), recorder.rows, recorder.kept,
                           recorder.last_maps, outputs, self.params, [*notes, *self.notes, *recorder.notes], prediction,
                           {"normalize": norm.record()} if (norm := self.req.load.normalize) else {})

    def _run(self, x: Any, recorder: Recorder) -> list[Any]:
        """The network's outputs on ``x`` (a NumPy array: the ONNX route takes it as it is), each layer recorded
        by the route."""
        if self.route == "onnx":
            from featcli.models.onnx_route import run_onnx

            return run_onnx(self.model, x, recorder)
        if self.route == "pt2":
            from featcli.models.export_route import run_pt2

            return run_pt2(self.model, _tensor(x), recorder)
        from featcli.models.torch_route import run_module

        return run_module(self.model, _tensor(x).to(self.req.device), recorder, self._memo)


def open_network(req: ModelRequest) -> Network:
    """Load ``req.model`` (not a featcli model file: those run through featcli's stage engine) once."""
    from featcli.engine.plan import memory_budget

    route = route_of(req.model)
    if route == "featcli":
        raise UsageError(f"--model {req.model!r}: a featcli model file runs through featcli's stage engine "
                         "(featcli run --model routes it there), not this layer-hook route")
    if req.weights and route != "torch":
        raise UsageError(f"--weights is for a PyTorch module:attr; an .{route} file holds its weights")
    if route == "onnx":
        from featcli.models.onnx_route import load_onnx, params_of

        onnx_model = load_onnx(req.model)
        return Network(req, route, onnx_model, onnx_model.dims, params_of(onnx_model.proto))
    if route == "pt2":
        from featcli.models.export_route import load_pt2

        program = load_pt2(req.model, memory_budget(req.max_bytes))
        return Network(req, route, program, program.dims, sum(p.numel() for p in program.module.parameters()))
    from featcli.models.torch_route import first_channels, load_module, load_weights

    module = load_module(req.model)
    if req.weights:
        load_weights(module, req.weights, allow_torchscript=req.allow_torchscript)
    module = module.to(req.device)
    return Network(req, route, module, (None, first_channels(module), None, None),
                   sum(p.numel() for p in module.parameters()))


def run_model(path: str, req: ModelRequest) -> ModelResult:
    """Run ``req.model`` on the image at ``path`` (library use; a run opens the network once)."""
    net = open_network(req)
    return net.forward(*net.prepare(path))
