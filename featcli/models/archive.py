"""What featcli checks in a ``.pt2`` archive before torch reads any of it.

``torch.export.load`` trusts its archive: it hands the ``expr_str`` of every symbolic size to
``sympy.sympify`` (which evaluates Python), resolves node targets by ``getattr`` on ``torch``, ``operator`` and
``math``, unpickles pickled weights, custom objects and the sample inputs, dlopens AOTInductor libraries
(``data/aotinductor/``), sizes weights by what the zip and the configs declare, and (``ExportedProgram.module``)
``exec``s the program's ``guards_code``. :func:`check_archive` reads only the zip's directory, the small
marker files, the two payload configs and ``models/model.json`` (each read with a cap) and refuses:

- a member outside the layout ``torch.export.save`` writes, a name that escapes its folder (``..``, ``/``,
  ``\\``), a duplicate name, a member over its size cap or compressed more than :data:`MAX_RATIO` to 1;
- a pickled or custom-object payload, a payload config that is not plain strided tensors with integer sizes,
  weights and constants that together need more than the memory budget;
- a symbolic expression outside :data:`EXPR_FUNCS` applied to integers and symbols (``s0``, ``u1``...),
  a node target other than an ``aten`` operator or one of the symbolic-size operators torch itself writes
  (:data:`SYM_TARGETS`), subgraphs and custom objects, a guard outside the arithmetic of input sizes.
"""

from __future__ import annotations

import ast
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any

from featcli.errors import BudgetError, ModelError
from featcli.shape.memory import human_bytes

__all__ = ["EXPR_FUNCS", "MAX_RATIO", "SYM_TARGETS", "check_archive"]

MiB = 1 << 20
MAX_MEMBERS = 20_000
MAX_RATIO = 200  # deflate reaches ~1000:1 on zeros; real JSON and weights stay far below 200:1
MAX_DEPTH = 64  # nesting of model.json (torch writes ~10)
MAX_EXPR = 65_536  # characters of one symbolic expression
SMALL = {"archive_format": 64, "archive_version": 64, "byteorder": 64, ".data/version": 64,
         ".data/serialization_id": 256}
CAPS = {"models/model.json": 32 * MiB, "data/weights/model_weights_config.json": 16 * MiB,
        "data/constants/model_constants_config.json": 16 * MiB, "data/sample_inputs/model.pt": 256 * MiB}
EXTRA_CAP = MiB  # extra/<name>, read whole by torch as text
_PAYLOAD = re.compile(r"data/(weights/weight|constants/tensor)_[0-9]{1,9}")
_EXTRA = re.compile(r"extra/[A-Za-z0-9_.-]{1,128}")
_SYMBOL = re.compile(r"(s|u|zf|zuf)[0-9]{1,6}")
_IDENT = r"(?!__)[A-Za-z_][A-Za-z0-9_]*"
_FQN = re.compile(rf"({_IDENT}|[0-9]+)(\.({_IDENT}|[0-9]+))*")
_ATEN = re.compile(rf"torch\.ops\.aten\.{_IDENT}\.{_IDENT}")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,16}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
ATEN_DENIED = {"from_file", "_print", "save", "load"}  # reach the file system or the terminal
SYM_TARGETS = {f"_operator.{n}" for n in ("getitem", "add", "sub", "mul", "floordiv", "mod", "truediv", "neg",
                                          "pos", "eq", "ne", "le", "ge", "lt", "gt", "and_", "or_")} | {
    "torch.sym_int", "torch.sym_float", "torch.sym_ite", "torch.sym_max", "torch.sym_min", "torch.sym_not",
    "torch._sym_sqrt", "math.trunc"}
# what torch.export's serializer writes for sizes (sympy's srepr), and torch.utils._sympy's integer functions
EXPR_FUNCS = {"Integer", "Symbol", "Add", "Mul", "Max", "Min", "FloorDiv", "Mod", "PythonMod", "CleanDiv",
              "CeilDiv", "CeilToInt", "FloorToInt", "TruncToInt", "Identity", "ModularIndexing", "Where",
              "Eq", "Ne", "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "And", "Or", "Not"}
_SYMBOL_FLAGS = {"positive", "integer", "nonnegative", "real", "finite"}
_ELEMENT = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1, 13: 2, 28: 2, 29: 1,
            30: 1, 31: 1, 32: 1, 33: 1, 34: 4, 35: 8}  # schema.ScalarType -> bytes per element
_STRIDED = 7


def _refuse(path: Path, what: str) -> ModelError:
    return ModelError(f"{path}: {what}; featcli refuses it before torch reads the archive")


def _member_names(path: Path, infos: list[zipfile.ZipInfo]) -> dict[str, zipfile.ZipInfo]:
    """Members by their name inside the archive's folder (torch strips the first member's folder from all)."""
    if not infos:
        raise _refuse(path, "an empty zip archive")
    if len(infos) > MAX_MEMBERS:
        raise _refuse(path, f"{len(infos)} members (at most {MAX_MEMBERS})")
    top = infos[0].filename.split("/", 1)[0]
    members: dict[str, zipfile.ZipInfo] = {}
    for i, info in enumerate(infos):
        name = info.filename
        parts = name.split("/")
        if (len(name) > 512 or not name.isprintable() or "\\" in name or parts[0] != top
                or any(p in ("", ".", "..") for p in parts) or len(parts) < 2):
            raise _refuse(path, f"member {i} has a name that escapes the archive's folder or is not a plain path")
        rel = name[len(top) + 1:]
        if rel in members:
            raise _refuse(path, f"member {i} repeats the name {rel!r}")
        if info.flag_bits & 0x1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _refuse(path, f"member {rel!r} is encrypted or compressed in a way torch cannot read")
        members[rel] = info
    return members


def _check_sizes(path: Path, members: dict[str, zipfile.ZipInfo]) -> None:
    for rel, info in members.items():
        if rel in SMALL:
            cap = SMALL[rel]
        elif rel in CAPS:
            cap = CAPS[rel]
        elif _PAYLOAD.fullmatch(rel):
            cap = 0  # weighed against the memory budget from the configs
        elif _EXTRA.fullmatch(rel):
            cap = EXTRA_CAP
        else:
            raise _refuse(path, f"member {rel!r} is not part of an archive torch.export.save writes "
                                "(AOTInductor libraries, pickles and custom objects are not loaded)")
        if cap and info.file_size > cap:
            raise _refuse(path, f"member {rel!r} declares {human_bytes(info.file_size)} (at most {human_bytes(cap)})")
        if info.file_size > MiB and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise _refuse(path, f"member {rel!r} inflates {info.file_size // max(info.compress_size, 1)} times "
                                f"(at most {MAX_RATIO})")
    for rel in ("archive_format", "archive_version", "models/model.json",
                "data/weights/model_weights_config.json", "data/constants/model_constants_config.json"):
        if rel not in members:
            raise ModelError(f"{path}: not an archive of torch.export.save (no {rel})")


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int, path: Path, rel: str) -> bytes:
    """The member's bytes, read in chunks and stopped past ``cap`` (its declared size may lie)."""
    out = bytearray()
    with zf.open(info) as f:
        while chunk := f.read(min(MiB, cap + 1 - len(out))):
            out += chunk
            if len(out) > cap:
                raise _refuse(path, f"member {rel!r} inflates past {human_bytes(cap)}")
    return bytes(out)


def _json(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], rel: str, path: Path) -> Any:
    data = _read(zf, members[rel], CAPS[rel], path, rel)
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ModelError(f"{path}: {rel} is not valid JSON") from None


def _int(value: Any, where: str, path: Path) -> int:
    if not isinstance(value, dict) or set(value) != {"as_int"} or type(value["as_int"]) is not int:
        raise _refuse(path, f"{where} is not a plain integer (symbolic or malformed)")
    n: int = value["as_int"]
    if not 0 <= n < 1 << 62:
        raise _refuse(path, f"{where} is out of range")
    return n


def _payload_bytes(path: Path, zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], folder: str,
                   named: set[str]) -> int:
    """Bytes the payloads of one config take once torch has loaded them (their members added to ``named``);
    refuses anything but plain tensors."""
    rel = f"data/{folder}/model_{folder}_config.json"
    doc = _json(zf, members, rel, path)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise _refuse(path, f"{rel} has no config mapping")
    need: dict[str, int] = {}
    for key, meta in config.items():
        where = f"{rel}: entry {len(need) + 1}"
        if not isinstance(meta, dict) or not _FQN.fullmatch(key) or len(key) > 512:
            raise _refuse(path, f"{where} is malformed or has a name that is not a module path")
        name = meta.get("path_name")
        if meta.get("use_pickle") is not False or not isinstance(name, str) or not _PAYLOAD.fullmatch(
                f"data/{folder}/{name}"):
            raise _refuse(path, f"{where} is stored as a pickle or custom object, which can run code; featcli "
                                "loads only plain tensors from .pt2 archives")
        tm = meta.get("tensor_meta")
        if not isinstance(tm, dict) or tm.get("dtype") not in _ELEMENT or tm.get("layout") != _STRIDED:
            raise _refuse(path, f"{where}: not a strided tensor of a known dtype")
        sizes, strides = tm.get("sizes"), tm.get("strides")
        if not isinstance(sizes, list) or not isinstance(strides, list) or len(sizes) != len(strides) or len(
                sizes) > 16:
            raise _refuse(path, f"{where}: malformed sizes or strides")
        shape = [_int(s, f"{where} size", path) for s in sizes]
        stride = [_int(s, f"{where} stride", path) for s in strides]
        offset = _int(tm.get("storage_offset"), f"{where} storage offset", path)
        device = tm.get("device")
        if not isinstance(device, dict) or device.get("type") not in ("cpu", "cuda"):
            raise _refuse(path, f"{where}: a device featcli does not run on")
        item = _ELEMENT[tm["dtype"]]
        extent = 0 if 0 in shape else offset + 1 + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
        member = members.get(f"data/{folder}/{name}")
        if member is None:
            raise ModelError(f"{path}: {where} names a payload the archive does not hold")
        # torch reads the whole member as the storage, or makes torch.zeros(sizes) for an empty one
        storage = member.file_size if member.file_size else math.prod(shape) * item
        if member.file_size and extent * item > member.file_size:
            raise ModelError(f"{path}: {where} needs {human_bytes(extent * item)} but its payload holds "
                             f"{human_bytes(member.file_size)}")
        need[name] = max(need.get(name, 0), storage)
        named.add(f"data/{folder}/{name}")
    return sum(need.values())


def _expr(text: Any, where: str, path: Path) -> None:
    """A symbolic size as torch writes it (``Add(FloorDiv(Symbol('s0', positive=True, integer=True), Integer(2)),
    Integer(1))``): only :data:`EXPR_FUNCS` calls on integers and named symbols, nothing sympify would evaluate
    beyond them."""
    if not isinstance(text, str) or len(text) > MAX_EXPR:
        raise _refuse(path, f"{where}: a symbolic expression that is not a string of at most {MAX_EXPR} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _refuse(path, f"{where}: a symbolic expression that does not parse") from None
    stack: list[ast.AST] = [tree.body]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and node.id in ("true", "false"):
            continue
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in EXPR_FUNCS):
            raise _refuse(path, f"{where}: a symbolic expression with something other than "
                                "integers, symbols and torch's size functions")
        name, args = node.func.id, node.args
        if name == "Symbol":
            ok = (len(args) == 1 and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
                  and _SYMBOL.fullmatch(args[0].value) is not None
                  and all(k.arg in _SYMBOL_FLAGS and isinstance(k.value, ast.Constant)
                          and isinstance(k.value.value, bool) for k in node.keywords))
        elif name == "Integer":
            arg = args[0].operand if args and isinstance(args[0], ast.UnaryOp) and isinstance(
                args[0].op, ast.USub) else (args[0] if args else None)
            ok = (len(args) == 1 and not node.keywords and isinstance(arg, ast.Constant)
                  and type(arg.value) is int and arg.value < 1 << 63)
        else:
            ok = not node.keywords and 0 < len(args) <= 64
            stack.extend(args)
        if not ok:
            raise _refuse(path, f"{where}: a malformed {name}(...) in a symbolic expression")


_GUARD_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.USub, ast.UAdd, ast.Not, ast.BinOp,
                ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod, ast.Compare, ast.Eq, ast.NotEq, ast.Lt,
                ast.LtE, ast.Gt, ast.GtE, ast.Load, ast.Constant, ast.Subscript, ast.Call, ast.Attribute, ast.Name)


def _guard(text: Any, where: str, path: Path) -> None:
    """A guard as torch writes it: ``2*(((-1) + L['x'].size()[3]) // 4) < 1 + ...`` (featcli never runs them:
    it builds the module with ``check_guards=False``; checked all the same, as torch would ``exec`` them)."""
    bad = _refuse(path, f"{where}: a guard other than arithmetic on input sizes")
    if not isinstance(text, str) or len(text) > MAX_EXPR:
        raise bad
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise bad from None
    for node in ast.walk(tree):
        if not isinstance(node, _GUARD_NODES):
            raise bad
        if isinstance(node, ast.Name) and node.id not in ("L", "max", "min"):
            raise bad
        if isinstance(node, ast.Constant) and not (type(node.value) in (int, float) or (
                isinstance(node.value, str) and _NAME.fullmatch(node.value))):
            raise bad  # a string only as an input's name: torch pastes guards into a string literal
        if isinstance(node, ast.Attribute) and node.attr not in ("size", "stride", "storage_offset"):
            raise bad
        if isinstance(node, ast.Call) and (node.keywords or not isinstance(node.func, (ast.Name, ast.Attribute))):
            raise bad
        if isinstance(node, ast.Subscript) and not (isinstance(node.slice, ast.Constant) and isinstance(
                node.value, (ast.Name, ast.Subscript, ast.Call))):
            raise bad


def _target(text: Any, where: str, path: Path) -> None:
    if not isinstance(text, str):
        raise _refuse(path, f"{where}: a target that is not a string")
    if text in SYM_TARGETS:
        return
    if _ATEN.fullmatch(text) and text.split(".")[3] not in ATEN_DENIED:
        return
    raise _refuse(path, f"{where}: target {text[:80]!r} is not an aten operator or a size operation "
                        "(featcli runs aten programs only)")


_VALUES = ("tensor_values", "sym_int_values", "sym_bool_values", "sym_float_values")
_PLAIN = re.compile(r"[A-Za-z0-9_.]{0,256}")


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON of names and numbers only (a pytree context: torch pastes dict keys into generated code)."""
    if value is None or isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        return _PLAIN.fullmatch(value) is not None
    if isinstance(value, list) and depth < 8:
        return all(_plain(v, depth + 1) for v in value)
    return False


def _treespec(text: Any, where: str, path: Path) -> None:
    """A module's input or output structure (``[1, {"type": "builtins.tuple", "context": "null", ...}]``)."""
    bad = _refuse(path, f"{where}: an input/output structure with more than type names and plain keys")
    try:
        protocol, spec = json.loads(text) if isinstance(text, str) and len(text) <= MiB else (None, None)
    except (ValueError, TypeError, RecursionError):
        raise bad from None
    if protocol != 1:
        raise bad
    stack, count = [(spec, 0)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if not isinstance(node, dict) or set(node) != {"type", "context", "children_spec"} or depth > MAX_DEPTH:
            raise bad
        typ, context, children = node["type"], node["context"], node["children_spec"]
        if not (typ is None or (isinstance(typ, str) and _DOTTED.fullmatch(typ))) or not isinstance(children, list):
            raise bad
        try:
            ok = context is None or (isinstance(context, str) and len(context) <= MiB and _plain(json.loads(context)))
        except (ValueError, RecursionError):
            ok = False
        if not ok:
            raise bad
        stack.extend((c, depth + 1) for c in children)


def _check_program(path: Path, doc: Any) -> None:
    """Walk ``models/model.json``: every expression, target, guard, module path and range (see the docstring)."""
    if not isinstance(doc, dict):
        raise _refuse(path, "models/model.json is not an exported program")
    for v in doc.get("verifiers") or []:
        if v not in ("", "ATEN", "TRAINING"):
            raise _refuse(path, "models/model.json: an unknown verifier")
    ranges = doc.get("range_constraints") or {}
    if not isinstance(ranges, dict):
        raise _refuse(path, "models/model.json: malformed range_constraints")
    for key, rng in ranges.items():
        if not _SYMBOL.fullmatch(key) or not isinstance(rng, dict) or not all(
                rng.get(k) is None or type(rng.get(k)) is int for k in ("min_val", "max_val")):
            raise _refuse(path, f"models/model.json: range constraint {len(key)}-character key is not a "
                                "symbol with integer bounds")
    guards = doc.get("guards_code") or []
    if not isinstance(guards, list):
        raise _refuse(path, "models/model.json: malformed guards_code")
    for i, g in enumerate(guards):
        _guard(g, f"models/model.json: guard {i + 1}", path)
    stack: list[tuple[Any, str, str, int]] = [(doc, "", "", 1)]  # value, its key, its JSON path, depth
    while stack:
        value, key, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _refuse(path, f"models/model.json nests deeper than {MAX_DEPTH}")
        where = f"models/model.json: {at}"
        if key == "expr_str":
            _expr(value, where, path)
        elif key in ("target", "as_operator"):
            _target(value, where, path)
        elif key in ("parameter_name", "buffer_name", "tensor_constant_name", "fqn"):
            if not isinstance(value, str) or (value and not _FQN.fullmatch(value)) or len(value) > 512:
                raise _refuse(path, f"{where}: a module path that is not dotted names")
        elif key in ("as_graph", "as_custom_obj", "custom_obj_name", "as_graph_module") or (
                key == "custom_obj_values" and value):
            raise _refuse(path, f"{where}: subgraphs and custom objects are not loaded")
        elif key in ("name", "as_name", "forward_arg_names", "field_names") and not isinstance(value, list):
            if not isinstance(value, str) or (value and not _NAME.fullmatch(value)):
                raise _refuse(path, f"{where}: a name that is not an identifier (torch writes it into code)")
        elif key in ("in_spec", "out_spec"):
            _treespec(value, where, path)
        elif key in _VALUES and isinstance(value, dict) and not all(_NAME.fullmatch(k) for k in value):
            raise _refuse(path, f"{where}: a name that is not an identifier (torch writes it into code)")
        elif key == "source_fn_stack" and isinstance(value, str):
            if not all(_DOTTED.fullmatch(part.rpartition(",")[2]) for part in value.split(";")):
                raise _refuse(path, f"{where}: a source function that is not a dotted name")
        if isinstance(value, dict):
            stack.extend((v, str(k), f"{at}.{str(k)[:40]}" if at else str(k)[:40], depth + 1)
                         for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, key, f"{at}[{i}]", depth + 1) for i, v in enumerate(value))


def check_archive(path: Path, budget: int = 0) -> None:
    """Refuse ``path`` unless torch can read it without running code from it, with weights and constants
    within ``budget`` bytes (0: no limit) and every member within its cap (see the module docstring)."""
    try:
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path}: not a .pt2 archive (torch.export.save writes a zip archive)")
        with zipfile.ZipFile(path) as zf:
            members = _member_names(path, zf.infolist())
            _check_sizes(path, members)
            fmt = _read(zf, members["archive_format"], SMALL["archive_format"], path, "archive_format")
            if fmt.strip() != b"pt2":
                raise ModelError(f"{path}: not an archive of torch.export.save (archive_format is not pt2)")
            named: set[str] = set()
            total = sum(_payload_bytes(path, zf, members, f, named) for f in ("weights", "constants"))
            sample = members.get("data/sample_inputs/model.pt")  # read whole by torch (featcli skips unpickling it)
            total += sample.file_size if sample else 0
            if budget and total > budget:
                raise BudgetError(f"{path}: its weights, constants and sample inputs need {human_bytes(total)}, "
                                  f"over the memory budget of {human_bytes(budget)} (--max-memory)")
            _check_program(path, _json(zf, members, "models/model.json", path))
            for rel, info in members.items():  # torch does not check the CRCs: a damaged weight would run
                if _PAYLOAD.fullmatch(rel) and rel not in named:
                    raise _refuse(path, f"member {rel!r} is a payload no config names")
                if rel in named:
                    with zf.open(info) as f:
                        while f.read(MiB):
                            pass
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError,
            ValueError) as exc:
        raise ModelError(f"{path}: damaged .pt2 archive ({type(exc).__name__})") from None
