"""``featcli cam``: class activation maps of a network on one image or many, and the files they give.

:func:`run_cam` opens the network once (:func:`featcli.run.camnet.open_cam_network`), checks every file it
will write before any work (names from ``-o``/``--save`` templates, never an input, no silent overwrite), then
takes each image through :func:`cam_image`: its input, the layer (``--layer``, else the last one with spatial
maps), the class (``--class``, else the predicted one), the map by its method's formula
(:mod:`featcli.run.cam`), the peak, the faithfulness figures on request, and its files written together or not
at all (:class:`featcli.io.outputs.PendingOutputs`). In a batch an image that fails is a failed record and
the others go on; a single image's failure is the run's error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from featcli.enums import CamMethod
from featcli.errors import FeatcliError, ModelError, UsageError, about
from featcli.io.images import LoadOptions
from featcli.run.cam import Faithfulness
from featcli.run.camnet import CamLayer, CamNetwork

__all__ = ["CamRequest", "CamResult", "cam_image", "list_layers", "resolve_class", "run_cam"]


@dataclass(frozen=True)
class CamRequest:
    """What ``featcli cam`` is asked to do (the options, validated by the CLI's parser)."""

    inputs: tuple[str, ...]
    model: str
    method: CamMethod = CamMethod.GRADCAM
    layer: str | None = None
    cls: str | None = None
    weights: str | None = None
    labels: str | None = None
    output: str | None = None
    save: str | None = None
    faithfulness: bool = False
    force: bool = False
    device: str = "cpu"
    threads: int | None = None
    max_bytes: int | None = None
    load: LoadOptions = field(default_factory=LoadOptions)
    resize: Any = None
    size: tuple[int, int] | None = None
    recursive: bool = False
    from_file: str | None = None


@dataclass(eq=False)
class CamResult:
    """One image's map: the class, its score and probability, where the map peaks, the files written."""

    path: str
    index: int
    method: CamMethod
    layer: CamLayer
    cls: int
    label: str | None
    score: float
    probability: float
    cam: Any = field(repr=False)  #: ``(h, w)`` at the layer's resolution
    peak: tuple[int, int]  #: ``(y, x)`` at the layer's resolution
    image_peak: tuple[int, int]  #: ``(y, x)`` in the input's pixels (the map upsampled to it)
    input_size: tuple[int, int]
    faith: Faithfulness | None = None
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0  #: the image's time: decode, the map, the figures and its files

    def record(self) -> dict[str, Any]:
        """The ``--jsonl`` record (docs/cam.md)."""
        rec: dict[str, Any] = {
            "path": self.path, "index": self.index, "status": "ok", "method": str(self.method),
            "layer": self.layer.name, "map": list(self.layer.shape[1:]), "class": self.cls, "label": self.label,
            "score": self.score, "probability": self.probability,
            "peak": {"y": self.peak[0], "x": self.peak[1], "value": float(self.cam[self.peak])},
            "image_peak": {"y": self.image_peak[0], "x": self.image_peak[1]}, "input": list(self.input_size)}
        if self.faith is not None:
            rec["faithfulness"] = {"confidence": self.faith.before, "masked": self.faith.after,
                                   "drop": self.faith.drop, "increase": self.faith.increase}
        rec["outputs"] = self.files
        rec["seconds"] = round(self.seconds, 6)
        return rec

    @property
    def class_text(self) -> str:
        return f"{self.label} ({self.cls})" if self.label else f"class {self.cls}"


def resolve_class(spec: str | None, classes: Sequence[str] | None, n: int, scores: Any) -> int:
    """``--class``: an index below ``n``, or a name of ``classes``; None: the class of the highest score."""
    if classes and len(classes) != n:
        raise UsageError(f"--labels names {len(classes)} classes but the network scores {n}")
    if spec is None:
        return int(scores[0].argmax())
    if spec.strip().lstrip("-").isdigit():
        k = int(spec)
        if not 0 <= k < n:
            raise UsageError(f"--class {spec}: the network has {n} classes (0 to {n - 1})")
        return k
    if not classes:
        raise UsageError(f"--class {spec!r}: a class by name needs the class names (--labels FILE); or give its "
                         "index")
    if spec in classes:
        return list(classes).index(spec)
    folded = [c.casefold() for c in classes]
    if spec.casefold() in folded:
        return folded.index(spec.casefold())
    raise UsageError(f"--class {spec!r}: not a class name; known: {', '.join(classes[:12])}"
                     f"{' ...' if len(classes) > 12 else ''}")


def cam_image(net: CamNetwork, req: CamRequest, path: str, *, index: int = 0, write: bool = True,
              files: tuple[str | None, str | None] = (None, None), inputs: Sequence[str] = ()) -> CamResult:
    """One image's map (see the module docstring); ``files``: its ``-o`` and ``--save`` names."""
    import time

    import torch

    from featcli.run.cam import faithfulness, gradient_cam, peak, scorecam, upsample

    started = time.perf_counter()
    image, x = net.prepare(path)
    layer = net.find_layer(x, req.layer) if req.layer else net.default_layer(x)
    grad = req.method.needs_gradients
    a, scores = net.forward(x, layer, grad=grad)
    cls = resolve_class(req.cls, net.classes, int(scores.shape[1]), scores)
    if grad:
        g = None
        if scores.requires_grad:
            (g,) = torch.autograd.grad(scores[0, cls], a, allow_unused=True)
        if g is None:
            raise ModelError(f"--model {req.model}: the scores do not depend on layer {layer.name!r}; pick a layer "
                             "on the path to the head (--layers)")
        cam = gradient_cam(a, g, req.method)[0]
    else:  # masked inputs in chunks of at most 16 MiB (and 32 inputs): the memory stays bounded
        cam = scorecam(a, x, net.scores, cls, chunk=max(1, min(32, (16 << 20) // max(1, 4 * x.numel()))))
    scores = scores.detach().to(torch.float64)
    size = (int(x.shape[2]), int(x.shape[3]))
    heat = upsample(cam.to(torch.float32), size).cpu()
    result = CamResult(path, index, req.method, layer, cls, net.classes[cls] if net.classes else None,
                       float(scores[0, cls]), float(torch.softmax(scores[0], 0)[cls]), cam.cpu(), peak(cam),
                       peak(heat), size)
    if req.faithfulness:
        result.faith = faithfulness(cam, x, net.scores, cls)
    if write and (files[0] or files[1]):
        result.files = _write(result, image, heat, files, req, inputs)
    result.seconds = time.perf_counter() - started
    return result


def caption(r: CamResult, model: str) -> tuple[str, list[str]]:
    """The overlay's title and caption lines."""
    from pathlib import Path

    from featcli.render.paint import fmt

    lines = [f"{r.class_text}: score {fmt(r.score)}, probability {r.probability:.3f}",
             f"{r.method} at layer {r.layer.name} ({r.layer.shape[1]}x{r.layer.shape[2]} maps, upsampled to "
             f"{r.input_size[0]}x{r.input_size[1]}); peak at (y, x) = {r.image_peak}"]
    if r.faith is not None:
        lines.append(f"masked by the map: probability {r.faith.after:.3f} (drop {r.faith.drop:.1f}%)")
    return f"{Path(r.path).name} · {Path(model).name}", lines


def _write(r: CamResult, image: Any, heat: Any, files: tuple[str | None, str | None], req: CamRequest,
           inputs: Sequence[str]) -> list[str]:
    from featcli.io.outputs import PendingOutputs
    from featcli.io.png import png_writer
    from featcli.io.tensors import save_tensors
    from featcli.render.overlay import render_overlay, rgb8

    output, save = files
    with PendingOutputs(force=req.force, inputs=inputs) as out:
        if output:
            title, lines = caption(r, req.model)
            pic = render_overlay(rgb8(image.array, image.value_max), heat.numpy(), title=title, lines=lines,
                                 peak=r.image_peak)
            meta = {"featcli:model": req.model, "featcli:method": str(r.method), "featcli:layer": r.layer.name,
                    "featcli:class": str(r.cls), **{str(k): str(v) for k, v in pic.info.items()}}
            out.write(output, png_writer(pic, output, metadata=meta))
        if save:
            save_tensors({"cam": r.cam}, save, out, hint="")
        return [str(p) for p in out.publish()]


def list_layers(net: CamNetwork, path: str | None) -> tuple[list[CamLayer], CamLayer | None]:
    """``--layers``: the candidate layers (on the image at ``path``; a featcli model file needs none) and the
    default one."""
    from featcli.errors import ModelError

    x = net.prepare(path)[1] if path is not None else None
    layers = net.layers(x)
    try:
        default = net.default_layer(x)
    except ModelError:
        default = None
    return layers, default


def _names(req: CamRequest, paths: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """Each input's ``-o`` and ``--save`` names, checked before any work."""
    from featcli.io.inputs import unique_stems
    from featcli.io.outputs import check_output
    from featcli.io.tensors import SAVE_EXTS
    from featcli.run.destinations import fill

    if req.save and not req.save.lower().endswith(SAVE_EXTS):
        raise UsageError(f"--save {req.save!r}: expected a .npy, .npz or .pt file")
    if req.output and not req.output.lower().endswith(".png"):
        raise UsageError(f"-o {req.output!r}: expected a .png file")
    stems = unique_stems(paths)
    names = [(fill(req.output, p, stem=s, n=i) if req.output else None,
              fill(req.save, p, stem=s, n=i) if req.save else None) for i, (p, s) in enumerate(zip(paths, stems,
                                                                                                  strict=True))]
    seen: set[str] = set()
    for pair in names:
        for name in pair:
            if name is None:
                continue
            if name in seen:
                raise UsageError(f"{len(paths)} images would all write {name!r}: put {{stem}} in the name")
            seen.add(name)
            check_output(name, force=req.force, inputs=paths)
    return names


def run_cam(req: CamRequest, emit: Callable[[CamResult | dict[str, Any]], None],
            note: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Every input's map, each handed to ``emit`` (a :class:`CamResult`, or a failed record ``{"path",
    "index", "status": "failed", "error"}`` in a batch); returns (images done, images failed)."""
    from featcli.engine.devices import resolve_device
    from featcli.run.camnet import open_cam_network
    from featcli.run.launch import find_inputs

    paths, single = find_inputs(req.inputs, recursive=req.recursive, from_file=req.from_file, note=note)
    names = _names(req, paths)
    device = resolve_device(req.device)
    net = open_cam_network(req.model, weights=req.weights, labels=req.labels, device=device,
                           max_bytes=req.max_bytes, load=req.load, resize=req.resize, size=req.size)
    if req.threads:  # onnxruntime's own threads for an ONNX file (the ONNX route never sets torch's)
        if net.route == "onnx":
            net.net.model.threads = req.threads  # type: ignore[attr-defined]
        else:
            import torch

            torch.set_num_threads(req.threads)
    if req.method.needs_gradients and not net.gradients:
        raise UsageError(f"--method {req.method} needs gradients, and an ONNX file has none (onnxruntime runs it "
                         "forward only); --method scorecam needs none")
    failed = 0
    for i, (path, files) in enumerate(zip(paths, names, strict=True)):
        try:
            emit(cam_image(net, req, path, index=i, files=files, inputs=paths))
        except UsageError:
            raise
        except FeatcliError as exc:
            if single:
                raise about(exc, path) from None
            failed += 1
            emit({"path": path, "index": i, "status": "failed", "error": str(about(exc, path))})
    return len(paths) - failed, failed
