"""The featcli model file: a trained network's tensors and what it is, in one safetensors file (no pickle).

A model file is a plain ``.safetensors`` file. Its tensors are the state dict of the ``Net`` class that
``featcli shape INPUT STACK --code`` prints (``s1.weight``, ``s2.running_mean``...); its ``__metadata__``
(str -> str) holds :data:`FORMAT_KEY` and one JSON string per :class:`ModelMeta` field.

Reading is safe on hostile files: the 8-byte header length and the JSON header are parsed with bounds
(:mod:`featcli.io.safeheader`) before anything is allocated: every tensor's dtype, shape and byte range are
checked against the file size, ranges must tile the data region exactly (no overlap, no hole), only float32 /
float16 / bfloat16 / int64 tensors are read, and float tensors must be finite. The metadata is checked for
types and ranges (:func:`check_meta`), the recorded input size against the recorded loading options included.
Every refusal is one :class:`WeightsError` naming the file. Writing goes through
:func:`featcli.io.outputs.atomic_write`: complete or absent.

>>> meta = ModelMeta(("conv:out=2,k=3", "flatten", "linear:out=2"), ("a", "b"), (1, 5, 5), {}, {}, "0.1.0")
>>> meta_from_strings(meta_to_strings(meta), what="m") == meta
True
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcli.enums import Alpha, Channels, Resize, Scale
from featcli.errors import FeatcliError, UsageError, WeightsError
from featcli.io.checkpoints import MAX_TENSOR_BYTES, is_file
from featcli.io.normalize import Normalize
from featcli.io.safeheader import DTYPES as ALL_DTYPES
from featcli.io.safeheader import TensorEntry, no_constant, read_header, tensor_entries
from featcli.stages.grammar import MAX_INT
from featcli.stages.spec import parse_stage

if TYPE_CHECKING:
    import torch

FORMAT_KEY = "featcli.format"
FORMAT = "featcli-model/1"
#: The metadata key of each :class:`ModelMeta` field (values are JSON).
FIELD_KEYS = {"stack": "featcli.stack", "classes": "featcli.classes", "input_shape": "featcli.input_shape",
              "loading": "featcli.loading", "training": "featcli.training",
              "featcli_version": "featcli.version"}
#: Largest value of one metadata field, in bytes of JSON.
MAX_FIELD_BYTES = 1 << 20
MAX_STAGES = 1000
MAX_CLASSES = 10_000
MAX_CLASS_NAME = 200
#: safetensors dtype code -> (torch dtype name, bytes per element). Nothing else is read.
DTYPES = {code: ALL_DTYPES[code] for code in ("F32", "F16", "BF16", "I64")}
_CODES = {name: code for code, (name, _) in DTYPES.items()}
#: Largest seed a training record (and ``featcli train --seed``) may hold: torch's and NumPy's generators take
#: 0 to 2**64 - 1, and the i-th random layer of a stack is seeded with ``seed + i``.
MAX_SEED = 2**63 - 1
#: The loading options a model file may record (:class:`featcli.io.images.LoadOptions`) and their defaults.
LOADING_DEFAULTS = {"channels": Channels.GRAY.value, "alpha": Alpha.DROP.value, "background": "white",
                    "scale": Scale.UNIT.value, "resize": Resize.STRETCH.value}  # files before --resize: stretched
#: Channels an image loaded with each ``channels`` option has (one more with ``alpha=keep`` when it has alpha).
_LOADED_CHANNELS = {Channels.RGB.value: (3,), Channels.GRAY.value: (1,), Channels.KEEP.value: (1, 3, 4)}
NOT_A_MODEL = ("is a safetensors file but not a featcli model (no featcli metadata); to read one tensor of it "
               "use conv:w=FILE:KEY or featcli kernels show FILE:KEY")


@dataclass(frozen=True)
class ModelMeta:
    """What a model file says about its network, beside the tensors."""

    stack: tuple[str, ...]  #: stage strings, e.g. ``("conv:out=6,k=5,p=2", "relu", ..., "linear:out=10")``
    classes: tuple[str, ...]  #: class names; index = output unit
    input_shape: tuple[int, int, int]  #: ``(C, H, W)`` the network was trained on
    loading: dict[str, Any]  #: the run loading options that turn an image into the input (JSON-able)
    training: dict[str, Any]  #: the training record: epochs, final metrics, seed, optimizer... (JSON-able)
    featcli_version: str


def _bad(path: Path, message: str) -> WeightsError:
    return WeightsError(f"not a valid featcli model file: {message}", path=str(path)[:300])


# --- metadata -----------------------------------------------------------------------------------------


def meta_to_strings(meta: ModelMeta) -> dict[str, str]:
    """The ``__metadata__`` of a model file for ``meta`` (validated first)."""
    check_meta(meta, what="model metadata")
    values = {"stack": list(meta.stack), "classes": list(meta.classes), "input_shape": list(meta.input_shape),
              "loading": meta.loading, "training": meta.training, "featcli_version": meta.featcli_version}
    out = {FORMAT_KEY: FORMAT}
    for field, key in FIELD_KEYS.items():
        try:
            out[key] = json.dumps(values[field], sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise WeightsError(f"model metadata: {field} is not JSON-able ({exc})") from None
    return out


def _json_field(strings: Mapping[str, str], field: str, what: str) -> Any:
    key = FIELD_KEYS[field]
    if key not in strings:
        raise WeightsError(f"{what}: metadata has no {key!r}")
    text = strings[key]
    if len(text) > MAX_FIELD_BYTES:
        raise WeightsError(f"{what}: metadata {key!r} is {len(text):,} characters, above {MAX_FIELD_BYTES:,}")
    try:
        return json.loads(text, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:
        raise WeightsError(f"{what}: metadata {key!r} is not JSON ({str(exc)[:100]})") from None


_JSON_TYPES: dict[type, str] = {list: "list", dict: "object", str: "string", bool: "boolean",
                                type(None): "null"}


def meta_from_strings(strings: Mapping[str, str], *, what: str) -> ModelMeta:
    """Parse and check a model file's ``__metadata__``; ``what`` names the file in messages."""
    fmt = strings.get(FORMAT_KEY)
    if fmt != FORMAT:
        raise WeightsError(f"{what}: model format {str(fmt)[:40]!r}; this featcli reads {FORMAT!r} "
                           "(written by another featcli version?)")
    v = {field: _json_field(strings, field, what) for field in FIELD_KEYS}
    for field, kind in (("stack", list), ("classes", list), ("input_shape", list), ("loading", dict),
                        ("training", dict), ("featcli_version", str)):
        if not isinstance(v[field], kind):
            raise WeightsError(f"{what}: metadata {field} is a JSON {_JSON_TYPES.get(type(v[field]), 'number')}, "
                               f"expected a JSON {_JSON_TYPES[kind]}")
    for field in ("stack", "classes"):
        if not all(isinstance(s, str) for s in v[field]):
            raise WeightsError(f"{what}: metadata {field} holds a value that is not a string")
    if not all(type(n) is int for n in v["input_shape"]):
        raise WeightsError(f"{what}: metadata input_shape {str(v['input_shape'])[:60]} is not a list of integers")
    meta = ModelMeta(tuple(v["stack"]), tuple(v["classes"]), tuple(v["input_shape"]),
                     v["loading"], v["training"], v["featcli_version"])
    check_meta(meta, what=what)
    return meta


def check_meta(meta: ModelMeta, *, what: str) -> None:
    """Refuse metadata no network can have: an unparseable or empty stack, bad class names, a bad input size."""
    if not 1 <= len(meta.stack) <= MAX_STAGES:
        raise WeightsError(f"{what}: the stack has {len(meta.stack)} stages; expected 1 to {MAX_STAGES}")
    for i, text in enumerate(meta.stack, 1):
        if not isinstance(text, str) or not text.strip():
            raise WeightsError(f"{what}: stage {i} of the stack is empty")
        try:
            parse_stage(text, i)
        except FeatcliError as exc:
            raise WeightsError(f"{what}: the stack does not parse: {exc}") from None
    if not 1 <= len(meta.classes) <= MAX_CLASSES:
        raise WeightsError(f"{what}: {len(meta.classes)} class names; expected 1 to {MAX_CLASSES:,}")
    for name in meta.classes:
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_CLASS_NAME or not name.isprintable():
            raise WeightsError(f"{what}: class name {str(name)[:40]!r} is not a printable name of 1 to "
                               f"{MAX_CLASS_NAME} characters")
    if len(set(meta.classes)) != len(meta.classes):
        dup = next(c for c in meta.classes if meta.classes.count(c) > 1)
        raise WeightsError(f"{what}: class name {dup[:40]!r} appears twice")
    shape = meta.input_shape
    if len(shape) != 3 or not all(type(n) is int and 1 <= n <= MAX_INT for n in shape):
        raise WeightsError(f"{what}: input_shape {list(shape)} is not (C, H, W) of 3 integers in 1..{MAX_INT}")
    for field in ("loading", "training"):
        if not isinstance(getattr(meta, field), dict):
            raise WeightsError(f"{what}: {field} is not a dict")
    _check_loading(meta.loading, shape, what)
    _check_training(meta.training, what)
    if not isinstance(meta.featcli_version, str) or not 1 <= len(meta.featcli_version) <= 100:
        raise WeightsError(f"{what}: featcli_version {str(meta.featcli_version)[:40]!r} is not a version string")


def loading_option(loading: Mapping[str, Any], key: str) -> str:
    """A recorded loading option as text, or its default (:data:`LOADING_DEFAULTS`)."""
    return str(loading.get(key, LOADING_DEFAULTS[key]))


def _shown(value: Any) -> str:
    """A metadata value in a message: as JSON (strings quoted, control characters escaped), cut short."""
    return json.dumps(value)[:40]


def _check_loading(loading: Mapping[str, Any], shape: tuple[int, ...], what: str) -> None:
    """Refuse loading options no image loader takes, and an input size they cannot give: a model recording
    RGB input tensors but gray loading would open, then fail on every image, blaming the image."""
    for key, kind in (("channels", Channels), ("alpha", Alpha), ("scale", Scale), ("resize", Resize)):
        value = loading.get(key, LOADING_DEFAULTS[key])
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) not in {e.value for e in kind}:
            raise WeightsError(f"{what}: loading option {key} {_shown(value)} is not one of "
                               f"{', '.join(e.value for e in kind)}")
    background = loading.get("background", LOADING_DEFAULTS["background"])
    if not isinstance(background, str) or not 1 <= len(background) <= 100:
        raise WeightsError(f"{what}: loading option background {_shown(background)} is not a colour name")
    if loading.get("normalize") is not None:
        try:
            Normalize.from_record(loading["normalize"], f"{what}: loading option").per_channel(shape[0])
        except (ValueError, UsageError) as exc:
            raise WeightsError(str(exc)) from None
    channels, alpha = loading_option(loading, "channels"), loading_option(loading, "alpha")
    gives = _LOADED_CHANNELS[channels]
    if alpha == Alpha.KEEP.value:
        gives = tuple(sorted({*gives, *(c + 1 for c in gives)}))
    if shape[0] not in gives:
        raise WeightsError(f"{what}: input_shape {list(shape)} has {shape[0]} channel{'s' * (shape[0] != 1)} but its "
                           f"loading options (channels={channels}, alpha={alpha}) give "
                           f"{' or '.join(map(str, gives))}: the network cannot take the images it would load")


def _check_training(rec: Mapping[str, Any], what: str) -> None:
    """Refuse a training record whose fields featcli reads (``eval --split val``) have the wrong type or range."""
    seed = rec.get("seed", 0)
    if type(seed) is not int or not 0 <= seed <= MAX_SEED:
        raise WeightsError(f"{what}: training seed {_shown(seed)} is not an integer from 0 to {MAX_SEED}")
    val_split = rec.get("val_split", 0.0)
    if type(val_split) not in (int, float) or not 0 <= val_split < 1:
        raise WeightsError(f"{what}: training val_split {_shown(val_split)} is not a number in [0, 1)")
    data = rec.get("data")
    if data is not None and (not isinstance(data, str) or len(data) > 4096):
        raise WeightsError(f"{what}: training data {_shown(data)} is not a name")


# --- the header ---------------------------------------------------------------------------------------


def _read_header(p: Path) -> tuple[dict[str, Any], int, int]:
    if not is_file(p):
        raise WeightsError("model file not found (or not a file)", path=str(p)[:300])
    return read_header(p, _bad)


def _entries(p: Path, header: Mapping[str, Any], data_size: int) -> dict[str, TensorEntry]:
    return tensor_entries(p, header, data_size, _bad, dtypes=DTYPES, max_bytes=MAX_TENSOR_BYTES)


def _metadata_strings(p: Path, header: Mapping[str, Any]) -> dict[str, str] | None:
    meta = header.get("__metadata__")
    if meta is None:
        return None
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _bad(p, "__metadata__ is not a mapping of strings to strings")
    return meta


# --- reading and writing ------------------------------------------------------------------------------


class ModelFile:
    """A model file whose header and metadata have been checked; tensors are read by :meth:`tensors`."""

    def __init__(self, path: Path, meta: ModelMeta, entries: dict[str, TensorEntry], data_start: int) -> None:
        self.path = path
        self.meta = meta
        #: every tensor's name, dtype, shape and byte range, in file order
        self.entries = dict(sorted(entries.items(), key=lambda kv: kv[1].begin))
        self._data_start = data_start

    def __repr__(self) -> str:
        return f"ModelFile({str(self.path)!r}, {len(self.entries)} tensors)"

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor (CPU, contiguous, its file dtype); float values checked finite."""
        if name not in self.entries:
            raise WeightsError(f"no tensor {name[:60]!r}; it holds {', '.join(list(self.entries)[:8]) or 'none'}",
                               path=str(self.path))
        return self._load([self.entries[name]])[name]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor by name, ready for ``Net().load_state_dict``."""
        return self._load(list(self.entries.values()))

    def _load(self, wanted: list[TensorEntry]) -> dict[str, torch.Tensor]:
        import torch

        out: dict[str, torch.Tensor] = {}
        try:
            with self.path.open("rb") as fh:
                for e in wanted:
                    fh.seek(self._data_start + e.begin)
                    raw = bytearray(fh.read(e.end - e.begin))
                    if len(raw) != e.end - e.begin:
                        raise _bad(self.path, f"tensor {e.name[:60]!r} is truncated (the file changed?)")
                    t = (torch.frombuffer(raw, dtype=getattr(torch, e.dtype)) if raw
                         else torch.empty(0, dtype=getattr(torch, e.dtype))).reshape(e.shape)
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        bad = int((~torch.isfinite(t)).sum())
                        raise _bad(self.path, f"tensor {e.name[:60]!r} holds {bad:,} NaN or infinite values")
                    out[e.name] = t.contiguous()
        except OSError as exc:
            raise WeightsError(f"cannot read: {exc.strerror or exc}", path=str(self.path)) from None
        return out


def read_model(path: str | Path) -> ModelFile:
    """Open a featcli model file: header, tensor table and metadata checked; tensors not loaded yet.

    Raises:
        WeightsError: missing, not a safetensors file, damaged, hostile, or a safetensors file without
            featcli metadata; one line naming the file and what is wrong.
    """
    p = Path(path)
    header, start, data_size = _read_header(p)
    strings = _metadata_strings(p, header)
    entries = _entries(p, header, data_size)
    if strings is None or FORMAT_KEY not in strings:
        raise WeightsError(NOT_A_MODEL, path=str(p)[:300])
    meta = meta_from_strings(strings, what=f"{str(p)[:300]}: not a valid featcli model file")
    return ModelFile(p, meta, entries, start)


def is_model_file(path: str | Path) -> bool:
    """True when ``path`` is a readable safetensors file whose header carries featcli metadata (cheap:
    the header only, nothing else checked)."""
    try:
        header, _, _ = _read_header(Path(path))
        strings = _metadata_strings(Path(path), header)
    except FeatcliError:
        return False
    return strings is not None and FORMAT_KEY in strings


def _prepared(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import torch

    out: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise WeightsError(f"model tensors: bad tensor name {str(name)[:60]!r}")
        if not isinstance(t, torch.Tensor):
            raise WeightsError(f"model tensors: {name!r} is a {type(t).__name__}, not a tensor")
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in _CODES:
            raise WeightsError(f"model tensors: {name!r} is {dtype}; a model file holds "
                               f"{', '.join(_CODES)}")
        t = t.detach().to("cpu").contiguous().clone()
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise WeightsError(f"model tensors: {name!r} holds NaN or infinite values; not written")
        out[name] = t
    return out


def write_model(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: ModelMeta, *,
                force: bool = False) -> None:
    """Write a model file: all of it, or nothing (atomic, create-exclusive; ``force`` replaces a file).

    Raises:
        WeightsError: a tensor of another dtype, or NaN values; metadata :func:`read_model` would refuse.
        OutputError: ``path`` exists (without ``force``), is a directory, or cannot be written.
    """
    from safetensors.torch import save

    from featcli.io.outputs import atomic_write

    strings = meta_to_strings(meta)
    data = save(_prepared(tensors), metadata=strings)
    write: Callable[[Any], object] = lambda fh: fh.write(data)  # noqa: E731
    atomic_write(path, write, force=force)
