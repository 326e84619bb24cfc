"""Hostile ``.pt2`` archives (issue #23): nothing in the archive runs, budgets hold before torch reads, one line.

Each archive is a clean export of a tiny conv net with dynamic H and W (so ``models/model.json`` holds symbolic
sizes, ranges and guards), rewritten member by member. A payload would create ``marker``; the tests assert it
does not exist and that the CLI said one ``featcli: error:`` line with exit 1.
"""

from __future__ import annotations

import json
import random
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from featcli.cli import app
from featcli.models import archive
from featcli.models.archive import check_archive


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.bn = nn.Conv2d(3, 4, 3, 2, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(torch.relu(self.bn(self.c(x))), 2, ceil_mode=True)


@pytest.fixture(scope="module")
def dyn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    auto = torch.export.Dim.AUTO
    program = torch.export.export(_Net().eval(), (torch.rand(1, 3, 32, 32),), dynamic_shapes=({2: auto, 3: auto},))
    out = tmp_path_factory.mktemp("pt2") / "dyn.pt2"
    torch.export.save(program, str(out))
    return out


def _rewrite(src: Path, dst: Path, program: Callable[[dict[str, Any]], None] | None = None,
             members: dict[str, bytes | None] | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """``src`` with ``program`` applied to models/model.json, ``members`` replaced (None: dropped) by the name
    inside the archive's folder, and ``extra`` added under their full names."""
    members = members or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            data: bytes | None = zin.read(info)
            if rel == "models/model.json" and program is not None:
                doc = json.loads(data or b"")
                program(doc)
                data = json.dumps(doc).encode()
            data = members.get(rel, data)
            if data is not None:
                zout.writestr(info, data)
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


def _one_line(runner: CliRunner, capfd: pytest.CaptureFixture[str], model: Path, *more: str) -> str:
    res = runner.invoke(app, ["run", "sample:shapes", "--model", str(model), *more])
    err = capfd.readouterr().err  # torch logs to the process's stderr, past CliRunner
    lines = res.output.strip().splitlines()
    assert res.exit_code == 1, res.output
    assert len(lines) == 1 and lines[0].startswith("featcli: error: "), res.output
    assert "Traceback" not in err and not err.strip(), err
    return lines[0]


def _graph(doc: dict[str, Any]) -> dict[str, Any]:
    graph: dict[str, Any] = doc["graph_module"]["graph"]
    return graph


def test_a_clean_dynamic_archive_runs_and_is_sized_per_node(runner: CliRunner, dyn: Path) -> None:
    res = runner.invoke(app, ["run", "sample:shapes", "--model", str(dyn)])
    assert res.exit_code == 0, res.output
    # the nodes' sizes are symbolic (s0, s1): bound to the image's, the first conv's output is refused first
    # the image itself (1x3x240x320, 900 KiB) is weighed first, before it is made
    res = runner.invoke(app, ["run", "sample:shapes", "--model", str(dyn), "--max-memory", "200K"])
    assert res.exit_code == 1 and "layer 'input': output 1x3x240x320 float32 needs 900.0 KiB" in res.output
    from featcli.errors import BudgetError
    from featcli.models.export_route import load_pt2, run_pt2
    from featcli.models.layers import Recorder

    with pytest.raises(BudgetError) as info:
        run_pt2(load_pt2(str(dyn)), torch.rand(1, 3, 240, 320), Recorder((), 200 << 10))
    assert "layer 'c:conv2d': output 1x4x120x160 float32 needs 300.0 KiB" in str(info.value)
    assert "While executing" not in str(info.value)  # torch.fx's appendix (the node, its stack trace) left out


@pytest.mark.parametrize("where", ["size", "stride", "range", "guard", "input name"])
def test_code_in_the_program_never_runs(runner: CliRunner, capfd: pytest.CaptureFixture[str], dyn: Path,
                                            tmp_path: Path, where: str) -> None:
    marker = tmp_path / "pwned"
    payload = f"__import__('os').mkdir({str(marker)!r})"

    def edit(doc: dict[str, Any]) -> None:
        x = _graph(doc)["tensor_values"]["x"]
        if where == "size":  # sympify evaluates it while torch rebuilds the input's size
            x["sizes"][2]["as_expr"]["expr_str"] = f"{payload} or Integer(1)"
        elif where == "stride":
            x["strides"][0]["as_expr"]["expr_str"] = f"Symbol('s0', positive=True).__class__({payload!r})"
        elif where == "range":  # the key ends up in ShapeEnv names and unbacked counters
            doc["range_constraints"][payload] = {"min_val": 2, "max_val": None}
        elif where == "guard":  # torch exec()s guards_code when it builds the module with check_guards=True
            doc["guards_code"].append(f"{payload} == 0")
        else:  # the input's name goes into the module's generated `def forward(self, x):` as it is
            text = json.dumps(doc).replace('"x"', json.dumps(f"x={payload}"))
            doc.clear()
            doc.update(json.loads(text))

    line = _one_line(runner, capfd, _rewrite(dyn, tmp_path / "evil.pt2", edit), )
    assert "refuses it before torch reads the archive" in line and not marker.exists()
    assert "__import__" not in line  # the file's text is not echoed


@pytest.mark.parametrize("target", ["torch.os.system", "builtins.eval", "_operator.attrgetter",
                                    "torch.ops.aten.from_file.default", "torch.ops.higher_order.cond",
                                    "#custom:op", "torch.ops.aten.__class__.__init__"])
def test_targets_outside_aten_are_refused(runner: CliRunner, capfd: pytest.CaptureFixture[str], dyn: Path,
                                          tmp_path: Path, target: str) -> None:
    marker = tmp_path / "pwned"

    def edit(doc: dict[str, Any]) -> None:
        _graph(doc)["nodes"].insert(0, {"target": target, "inputs": [
            {"name": "", "arg": {"as_string": f"mkdir {marker}"}, "kind": 1}], "outputs": [], "metadata": {},
            "is_hop_single_tensor_return": None, "name": "evil"})
        doc["verifiers"] = []

    line = _one_line(runner, capfd, _rewrite(dyn, tmp_path / "evil.pt2", edit))
    assert "graph_module.graph.nodes[0].target" in line and "featcli runs aten programs only" in line
    assert not marker.exists()


def test_structures_and_names_torch_writes_into_code(tmp_path: Path) -> None:
    leaf = {"type": None, "context": None, "children_spec": []}
    spec = [1, {"type": "builtins.tuple", "context": "null", "children_spec": [
        {"type": "builtins.tuple", "context": "null", "children_spec": []},
        {"type": "builtins.dict", "context": json.dumps(["x"]), "children_spec": [leaf]}]}]
    archive._treespec(json.dumps(spec), "here", tmp_path)
    spec[1]["children_spec"][1]["context"] = json.dumps(["x':__import__('os').getcwd(),'y"])  # a dict key
    for text in (json.dumps(spec), "[2, {}]", '{"type": "os.system"}', "[1, " * 5000):
        with pytest.raises(archive.ModelError, match="input/output structure"):
            archive._treespec(text, "here", tmp_path)


@pytest.mark.parametrize("text", [
    "Symbol('os')", "Integer(10**100)", "Integer('1')", "Symbol('s0', positive=True).func", "Add(*[Integer(1)])",
    "Pow(Symbol('s0'), Integer(99999999))", "PowByNatural(Integer(2), Integer(99999999))", "(lambda: 1)()",
    "Add(Symbol('s0'), Integer(1), evaluate=False)", "Integer(1) + Integer(2)", "s0", "Symbol('s0', x=1)",
    "Integer(1)\x00", "(" * 300 + "Integer(1)" + ")" * 300, "Max(" + ", ".join(["Symbol('s0')"] * 65) + ")",
])
def test_expression_grammar_refuses(text: str, tmp_path: Path) -> None:
    with pytest.raises(archive.ModelError, match="symbolic expression"):
        archive._expr(text, "here", tmp_path)


def test_expression_grammar_takes_what_torch_writes(dyn: Path, tmp_path: Path) -> None:
    texts = [*_expressions(dyn), "Mod(CeilToInt(Symbol('u1', integer=True)), Integer(-3))",
             "Where(StrictLessThan(Symbol('s0', positive=True, integer=True), Integer(4)), Integer(1), Integer(2))"]
    assert any("FloorDiv" in t for t in texts)
    for text in texts:
        archive._expr(text, "here", tmp_path)


def _expressions(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        doc = zf.read(next(n for n in zf.namelist() if n.endswith("models/model.json"))).decode()
    return [json.loads(f'"{m}"') for m in __import__("re").findall(r'"expr_str": "((?:[^"\\]|\\.)*)"', doc)]


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize(("name", "message"), [
    ("dyn/../../etc/x", "escapes the archive's folder"),
    ("other/models/model.json", "escapes the archive's folder"),
    ("dyn/data\\weights\\weight_9", "escapes the archive's folder"),
    ("dyn/models/model.json", "repeats the name 'models/model.json'"),
    ("dyn/data/aotinductor/model/model.so", "AOTInductor libraries"),
    ("dyn/data/weights/model.pt", "not part of an archive torch.export.save writes"),
    ("dyn/data/constants/custom_obj_0", "not part of an archive torch.export.save writes"),
    ("dyn/models/second.json", "not part of an archive torch.export.save writes"),
    ("dyn/data/weights/weight_9", "a payload no config names"),
    ("dyn/x\x1b[2J", "escapes the archive's folder"),
])
def test_layout_and_names(runner: CliRunner, capfd: pytest.CaptureFixture[str], dyn: Path, tmp_path: Path,
                          name: str, message: str) -> None:
    bad = _rewrite(dyn, tmp_path / "bad.pt2", extra={name: b"{}"})
    line = _one_line(runner, capfd, bad)
    assert message in line and "\x1b" not in line


def test_weights_are_weighed_before_torch_reads(runner: CliRunner, capfd: pytest.CaptureFixture[str], dyn: Path,
                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with zipfile.ZipFile(dyn) as zf:
        config = json.loads(zf.read("dyn/data/weights/model_weights_config.json"))
    # an empty member whose config declares 750M floats: torch.export.load makes torch.zeros of it, 2.8 GiB
    config["config"]["c.bias"]["tensor_meta"]["sizes"] = [{"as_int": 750_000_000}]
    big = _rewrite(dyn, tmp_path / "big.pt2", members={"data/weights/weight_1": b"",
                                                       "data/weights/model_weights_config.json":
                                                       json.dumps(config).encode()})

    def reached(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("torch.export.load was reached")

    monkeypatch.setattr(torch.export, "load", reached)
    line = _one_line(runner, capfd, big, "--max-memory", "100M")
    assert "need 2.8 GiB, over the memory budget of 100.0 MiB (--max-memory)" in line
    # a 2 MiB weight of zeros deflated 1000:1 (a 3 MB archive can hold a 3 GB weight so)
    bomb = tmp_path / "bomb.pt2"
    with zipfile.ZipFile(_rewrite(dyn, bomb, members={"data/weights/weight_0": None}), "a") as zf:
        zf.writestr(zipfile.ZipInfo("dyn/data/weights/weight_0"), bytes(2 << 20), zipfile.ZIP_DEFLATED)
    assert "'data/weights/weight_0' inflates 10" in _one_line(runner, capfd, bomb)
    # a payload smaller than its config says, a symbolic weight size, a pickle
    for change, message in [({"sizes": [{"as_int": 4000}]}, "needs 15.6 KiB but its payload holds 16 B"),
                            ({"sizes": [{"as_expr": {"expr_str": "Symbol('s0')"}}]}, "is not a plain integer"),
                            ({"dtype": 99}, "not a strided tensor of a known dtype")]:
        doc = json.loads(json.dumps(config))
        doc["config"]["c.bias"]["tensor_meta"].update(change)
        bad = _rewrite(dyn, tmp_path / "bad.pt2", members={"data/weights/model_weights_config.json":
                                                           json.dumps(doc).encode()})
        assert message in _one_line(runner, capfd, bad)


def _lie_about_size(path: Path, member: str, size: int) -> None:
    """Rewrite ``member``'s uncompressed size in its local header and in the central directory."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        struct.pack_into("<I", data, zf.getinfo(member).header_offset + 22, size)
    pos = data.find(b"PK\x01\x02")
    while pos >= 0:
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + n].decode() == member:
            struct.pack_into("<I", data, pos + 24, size)
        pos = data.find(b"PK\x01\x02", pos + 46)
    path.write_bytes(bytes(data))


def test_inflating_json_is_capped(dyn: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(archive.CAPS, "data/weights/model_weights_config.json", 64 << 10)
    with zipfile.ZipFile(dyn) as zf:
        body = zf.read("dyn/data/weights/model_weights_config.json")
    padded = body[:-1] + b" " * (512 << 10) + body[-1:]  # valid JSON, 512 KiB, deflates to ~1 KiB
    bad = _rewrite(dyn, tmp_path / "bad.pt2", members={"data/weights/model_weights_config.json": None})
    with zipfile.ZipFile(bad, "a") as zf:
        zf.writestr(zipfile.ZipInfo("dyn/data/weights/model_weights_config.json"), padded, zipfile.ZIP_DEFLATED)
    with pytest.raises(archive.ModelError, match=r"declares 514.0 KiB \(at most 64.0 KiB\)"):
        check_archive(bad)
    _lie_about_size(bad, "dyn/data/weights/model_weights_config.json", 4096)  # says 4 KiB, inflates to 512
    tracemalloc.start()
    with pytest.raises(archive.ModelError, match="damaged .pt2 archive|inflates past"):
        check_archive(bad)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 256 << 10


@pytest.mark.parametrize(("members", "message"), [
    ({"archive_version": None}, "no archive_version"),  # torch logged a 12-line traceback, then "check the warnings"
    ({"archive_version": b"9"}, "cannot load the exported program (Saved archive version 9 does not match"),
    ({"data/weights/weight_3": None}, "names a payload the archive does not hold"),
    ({"archive_format": b"zip"}, "archive_format is not pt2"),
    ({"models/model.json": b"[" * 100_000}, "models/model.json is not valid JSON"),
    ({"models/model.json": b'{"graph_module": ' * 100 + b"1" + b"}" * 100}, "nests deeper than 64"),
])
def test_damaged_archives_are_one_line(runner: CliRunner, capfd: pytest.CaptureFixture[str], dyn: Path,
                                       tmp_path: Path, members: dict[str, bytes | None], message: str) -> None:
    assert message in _one_line(runner, capfd, _rewrite(dyn, tmp_path / "bad.pt2", members=members))


def test_a_damaged_weight_is_not_run(runner: CliRunner, capfd: pytest.CaptureFixture[str], dyn: Path,
                                     tmp_path: Path) -> None:
    """torch reads a weight without checking its CRC: a flipped bit ran, with exit 0 and other numbers."""
    data = bytearray(dyn.read_bytes())
    with zipfile.ZipFile(dyn) as zf:
        info = zf.getinfo("dyn/data/weights/weight_0")
    n, m = struct.unpack_from("<HH", data, info.header_offset + 26)
    data[info.header_offset + 30 + n + m + 5] ^= 0x40  # the 2nd float's exponent: a stored member, bytes as is
    (tmp_path / "flipped.pt2").write_bytes(bytes(data))
    assert "damaged .pt2 archive (BadZipFile)" in _one_line(runner, capfd, tmp_path / "flipped.pt2")


def test_fuzzed_archives_fail_in_one_line(runner: CliRunner, capfd: pytest.CaptureFixture[str], dyn: Path,
                                          tmp_path: Path) -> None:
    """Truncated and bit-flipped copies: each is one line, exit 1 (a flipped weight fails the zip's CRC), or the
    clean archive's very table (a flip in a date, the serialization id or the sample inputs featcli skips)."""
    good, rng = dyn.read_bytes(), random.Random(23)
    clean = runner.invoke(app, ["run", "sample:shapes", "--model", str(dyn)]).output.splitlines()[1:]
    for i in range(12):
        data = bytearray(good)
        if i % 3 == 0:
            data = data[:rng.randrange(len(data))]
        else:
            for _ in range(1 + i % 4):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        bad = tmp_path / f"fuzz{i}.pt2"
        bad.write_bytes(bytes(data))
        res = runner.invoke(app, ["run", "sample:shapes", "--model", str(bad)])
        err = capfd.readouterr().err
        assert "Traceback" not in res.output + err and not err.strip(), (i, res.output, err)
        if res.exit_code == 0:
            assert res.output.splitlines()[1:] == clean, (i, res.output)
            continue
        assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, (i, res.output)
        assert res.output.startswith("featcli: error: "), (i, res.output)


class _Repeat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(x).repeat(1, 1, 2, 2)


def test_a_node_is_weighed_on_its_arguments_not_its_recorded_shape(
        runner: CliRunner, capfd: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the archive records repeat's output as 2x the input, but its arguments ask for 40x40: 2x(16*40)^2 floats
    # = 3.3 MB at the 16x16 the model declares, over a 1M budget; torch would allocate it unweighed
    program = torch.export.export(_Repeat().eval(), (torch.rand(1, 3, 16, 16),))
    clean = tmp_path / "rep.pt2"
    torch.export.save(program, str(clean))

    def lie(doc: dict[str, Any]) -> None:
        node = next(n for n in _graph(doc)["nodes"] if "repeat" in n["target"])
        node["inputs"][1]["arg"]["as_ints"] = [1, 1, 40, 40]

    hostile = _rewrite(clean, tmp_path / "lie.pt2", lie)
    assert runner.invoke(app, ["run", "sample:shapes", "--model", str(clean), "--max-memory", "1M"]).exit_code == 0
    called: list[str] = []
    real = torch.fx.Interpreter.call_function

    def spy(self: Any, target: Any, args: Any, kwargs: Any) -> Any:
        called.append(str(target))
        return real(self, target, args, kwargs)

    monkeypatch.setattr(torch.fx.Interpreter, "call_function", spy)
    line = _one_line(runner, capfd, hostile, "--max-memory", "1M")
    assert "1x2x640x640" in line and "over the memory budget" in line, line
    assert any("conv2d" in c for c in called) and not any("repeat" in c for c in called), called  # never ran
