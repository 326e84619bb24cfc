"""The ONNX route as exporters write files and as it streams (#25): Constant-node weights, dynamic batch dims,
segment-by-segment statistics against onnxruntime's own full run, a failing node, and no torch on the way.

Every model is built here with onnx's helper API (small, no exporter), and every reference is onnxruntime
running the same file with all its intermediate values as outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from featcli.cli import app
from featcli.errors import ModelError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from featcli.models import onnx_route, onnx_stream  # noqa: E402
from featcli.models.layers import Recorder  # noqa: E402

RNG = np.random.default_rng(0)
WEIGHTS = {k: RNG.standard_normal(shape).astype(np.float32)
           for k, shape in (("w1", (8, 3, 3, 3)), ("b1", (8,)), ("w2", (8, 8, 3, 3)), ("fc", (5, 8)), ("fb", (5,)))}


def _net(path: Path, *, constants: bool = False, dims: Any = (1, 3, 16, 16), bad_reshape: bool = False) -> Path:
    """conv, relu, conv, a residual add, a reshape to its own shape (int tensors crossing segments), global
    pooling, flatten, a linear layer; weights as initializers or, ``constants``, as Constant nodes (w2 through an
    Identity, as tf2onnx writes it)."""
    nodes = [
        h.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        h.make_node("Conv", ["r1", "w2" if not constants else "w2id"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        h.make_node("Add", ["r1", "c2"], ["a"], name="add"),
        h.make_node("Shape", ["a"], ["s"], name="shape"),
        h.make_node("Reshape", ["a", "s" if not bad_reshape else "seven"], ["re"], name="reshape"),
        h.make_node("GlobalAveragePool", ["re"], ["g"], name="gap"),
        h.make_node("Flatten", ["g"], ["f"], name="flatten"),
        h.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1, name="fc")]
    inits = [nh.from_array(np.array([7, -1], np.int64), "seven")] if bad_reshape else []
    if constants:
        nodes = [h.make_node("Constant", [], [k], value=nh.from_array(v, k), name=f"const_{k}")
                 for k, v in WEIGHTS.items()] + [h.make_node("Identity", ["w2"], ["w2id"], name="w2_identity")] + nodes
    else:
        inits += [nh.from_array(v, k) for k, v in WEIGHTS.items()]
    g = h.make_graph(nodes, "net", [h.make_tensor_value_info("input", T.FLOAT, list(dims))],
                     [h.make_tensor_value_info("y", T.FLOAT, [None, None])], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    path.write_bytes(m.SerializeToString())
    return path


def _x() -> np.ndarray:
    return np.random.default_rng(1).random((1, 3, 16, 16), dtype=np.float32)


def _every_value(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """onnxruntime's own run of ``path`` with every node output as a graph output."""
    m = onnx.load(str(path))
    known = {o.name for o in m.graph.output}
    for n in m.graph.node:
        if n.op_type != "Constant":
            m.graph.output.extend(h.make_empty_tensor_value_info(o) for o in n.output if o not in known)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"input": x}), strict=True))


def _run(path: Path, layers: tuple[str, ...] = ()) -> tuple[Recorder, list[Any]]:
    rec = Recorder(layers, 100 << 20)
    return rec, onnx_route.run_onnx(onnx_route.load_onnx(str(path)), _x(), rec)


def test_constant_weights_count_and_are_checked_as_initializers_are(tmp_path: Path) -> None:
    a, b = _net(tmp_path / "init.onnx"), _net(tmp_path / "const.onnx", constants=True)
    assert onnx_route.params_of(onnx.load(str(a))) == onnx_route.params_of(onnx.load(str(b))) == \
        sum(v.size for v in WEIGHTS.values())
    (ra, ya), (rb, yb) = _run(a), _run(b)
    rows_a, rows_b = ({r.name: r for r in rec.rows} for rec in (ra, rb))
    assert list(rows_a) == list(rows_b)  # constants fold: not layers
    for name in ("conv1", "conv2", "fc"):
        assert rows_b[name].ok is True and rows_b[name].spec == rows_a[name].spec, rows_b[name]
        assert rows_b[name].params == rows_a[name].params > 0 and rows_b[name].macs == rows_a[name].macs > 0
    np.testing.assert_array_equal(ya[0], yb[0])


@pytest.mark.parametrize("batch", [-1, 0, "N", "batch"])
def test_a_dynamic_batch_runs_with_one_image(tmp_path: Path, batch: Any) -> None:
    path = _net(tmp_path / "b.onnx", dims=(batch, 3, "h", -1))
    assert onnx_route.load_onnx(str(path)).dims == (None, 3, None, None)
    if batch not in (-1, "N"):
        return  # the same run
    res = CliRunner().invoke(app, ["run", "sample:shapes", "--model", str(path), "--size", "16x16", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.splitlines()[-1])["output"] == [[1, 5]]


@pytest.mark.parametrize("segment", [0, onnx_stream.SEGMENT_BYTES])
def test_streamed_statistics_and_kept_layers_equal_onnxruntime_full_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, segment: int) -> None:
    """One node a segment (every tensor crosses a cut, the Shape's int64 one included) and the default."""
    monkeypatch.setattr(onnx_route, "SEGMENT_BYTES", segment)
    path = _net(tmp_path / "s.onnx", constants=True)
    rec, (y,) = _run(path, ("conv*", "add"))
    want = _every_value(path, _x())
    model = onnx.load(str(path))
    outs = {n.name: n.output for n in model.graph.node}
    assert [r.name for r in rec.rows] == [n.name for n in model.graph.node
                                          if n.op_type not in ("Shape", "Constant", "Identity")]
    for r in rec.rows:
        v = want[outs[r.name][0]]
        assert r.shapes == (v.shape,) and r.stats is not None
        assert (r.stats.min, r.stats.max) == (v.min(), v.max())
        assert r.stats.mean == pytest.approx(float(v.mean(dtype=np.float64)), rel=1e-6)
        assert r.stats.zeros == pytest.approx(float(np.mean(v == 0)))
    assert sorted(rec.kept) == ["add", "conv1", "conv2"]
    for name, (t,) in rec.kept.items():
        np.testing.assert_array_equal(t, want[outs[name][0]])
    assert rec.last_maps is not None and rec.last_maps[0] == "reshape"  # the last maps wider than 1x1
    np.testing.assert_array_equal(y, want["y"])
    if segment == 0:
        p, _, _ = onnx_route._plan(onnx_route.load_onnx(str(path)), (1, 3, 16, 16), 100 << 20)
        assert len(p.segments) == 9 and any("s" in s.inputs for s in p.segments)


def test_a_failing_node_is_named_in_one_line_and_the_rows_before_it_stay(tmp_path: Path) -> None:
    path = _net(tmp_path / "bad.onnx", bad_reshape=True)
    rec = Recorder((), 100 << 20)
    with pytest.raises(ModelError) as info:
        onnx_route.run_onnx(onnx_route.load_onnx(str(path)), _x(), rec)
    text = str(info.value)
    assert "\n" not in text and "layer reshape (Reshape): " in text and "[ONNXRuntimeError]" not in text
    # the table up to the failed row (Recorder.fail), as on the other routes
    assert [r.name for r in rec.rows] == ["conv1", "relu1", "conv2", "add", "reshape"]
    assert rec.rows[-1].error is not None and rec.rows[-1].ok is not True


_NO_TORCH = """
import json, sys, traceback
first = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        stack = traceback.extract_stack()
        if name == "torch" and not first and any(f.name == "_find_and_load" for f in stack):
            first.append([f"{f.filename.split('featcli/')[-1]}:{f.name}" for f in stack if "/featcli/" in f.filename])
        return None
sys.meta_path.insert(0, Watch())
from featcli.cli import main
sys.argv = ["featcli", "run", "sample:shapes", "--model", sys.argv[1], "--size", "16x16", "--json"]
try:
    main()
except SystemExit as e:
    assert not e.code, e.code
print(json.dumps({"stack": first[0] if first else None, "torch": "torch" in sys.modules}))
"""


@pytest.mark.slow
def test_the_onnx_route_never_imports_torch(tmp_path: Path) -> None:
    """A whole ``featcli run --model x.onnx`` in a fresh process: torch is never imported (it costs more than the
    run). Until models/service.py:model_input makes its array with NumPy and Pillow, it is the one importer."""
    path = _net(tmp_path / "n.onnx")
    out = subprocess.run([sys.executable, "-c", _NO_TORCH, str(path)], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"stack": None, "torch": False}
