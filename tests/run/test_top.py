"""``featcli top``: the streaming top-k equals a brute-force search, the boxes are the receptive fields, shards
merge to one run's bytes, bad images are records, ties are deterministic, dead channels are found."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.render.sheets import field_crop
from featcli.run.config import RunConfig
from featcli.run.image import process_image
from featcli.run.top import TopRequest, find_top, top_positions
from featcli.shape.field import field_of
from featcli.shape.infer import infer
from featcli.stages.build import build_stack
from featcli.stages.spec import parse_stages

STAGES = ["conv:w=sobel_x+sobel_y,p=1", "relu", "avgpool:k=2", "maxpool:k=3,s=2"]  # the NumPy engine: no torch import


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Five small gray images (two of one size, three of another; one flat, so ties abound)."""
    rng = np.random.default_rng(7)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(5):
        shape = (14, 18) if i < 2 else (12, 16)
        a = rng.integers(0, 4, shape, dtype=np.uint8) * 60 if i != 3 else np.full(shape, 90, np.uint8)
        Image.fromarray(a).save(d / f"im{i}.png")
    return d


def _stack(texts: list[str]) -> tuple[Any, ...]:
    return tuple(build_stack(texts, kernels=[], pools=[]))


def _maps(paths: list[Path], stack: tuple[Any, ...], stage: int, tmp: Path) -> list[np.ndarray]:
    """Each image's maps of ``stage`` as ``featcli run --save`` writes them."""
    out = []
    for p in paths:
        save = tmp / f"{p.stem}.npz"
        process_image(str(p), RunConfig(stack=stack, save=str(save), stages=str(stage)))
        with np.load(save) as z:
            (arr,) = z.values()
        out.append(arr[0])
    return out


def test_top_k_equals_a_brute_force_search(folder: Path, tmp_path: Path) -> None:
    paths = sorted(folder.iterdir())
    stack, k = _stack(STAGES), 5
    res = find_top(TopRequest((str(folder),), RunConfig(stack=stack), k=k))
    maps = _maps(paths, stack, 4, tmp_path)
    assert res.stage == 4 and res.images == 5 and len(res.channels) == 2
    for c, ch in enumerate(res.channels):
        every = [(-float(m[c, y, x]), i, y, x) for i, m in enumerate(maps)
                 for y in range(m.shape[1]) for x in range(m.shape[2])]
        want = sorted(every)[:k]
        got = [(-e["value"], e["index"], e["y"], e["x"]) for e in ch.entries]
        assert got == want
        flat = np.concatenate([m[c].ravel() for m in maps]).astype(np.float64)
        assert ch.count == flat.size and ch.zeros == int((flat == 0).sum())
        assert ch.max == flat.max() and ch.min == flat.min() and ch.mean == pytest.approx(flat.mean(), rel=1e-9)


def test_ties_go_to_input_order_then_row_major() -> None:
    v, p = top_positions(np.array([[2.0, 5.0, 5.0, 1.0, 5.0, 5.0]], np.float32), 3)
    assert p.tolist() == [[1, 2, 4]] and v.tolist() == [[5.0, 5.0, 5.0]]


def test_values_that_are_not_finite_rank_last() -> None:
    v, p = top_positions(np.array([[-np.inf, 1.0, -np.inf, -np.inf]], np.float32), 3)
    assert p.tolist() == [[1, 0, 2]] and v.tolist() == [[1.0, -np.inf, -np.inf]]


def test_a_flat_image_ties_everywhere_and_the_first_positions_win(tmp_path: Path) -> None:
    for name in ("a", "b"):
        Image.fromarray(np.full((6, 7), 200, np.uint8)).save(tmp_path / f"{name}.png")
    res = find_top(TopRequest((str(tmp_path),), RunConfig(stack=_stack(["conv:w=box"])), k=4))
    (ch,) = res.channels
    assert [(e["index"], e["y"], e["x"]) for e in ch.entries] == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 0, 3)]
    assert ch.dead  # constant over the folder


def test_field_is_the_support_of_the_gradient() -> None:
    torch = pytest.importorskip("torch")
    specs = ["conv:k=3,p=1", "avgpool:k=2", "conv:k=3,s=2,p=2,d=2", "relu", "conv:k=2,p=1"]
    h, w = 24, 20  # even: the pool drops nothing, so every intermediate padding lies outside the image
    rep = infer((1, 1, h, w), parse_stages(specs))
    layers = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3, padding=1), torch.nn.AvgPool2d(2),
                                 torch.nn.Conv2d(1, 1, 3, stride=2, padding=2, dilation=2),
                                 torch.nn.Conv2d(1, 1, 2, padding=1))
    for m in layers:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.constant_(m.weight, 1.0)
    out_h, out_w = rep.stages[-1].out_shape[2:]
    assert tuple(layers(torch.zeros(1, 1, h, w)).shape[2:]) == (out_h, out_w)
    for y in range(out_h):
        for x in range(out_w):
            img = torch.zeros(1, 1, h, w, requires_grad=True)
            layers(img)[0, 0, y, x].backward()
            ys, xs = np.nonzero(img.grad[0, 0].numpy())
            box = field_of(rep, 5, y, x)
            assert box is not None
            top, left, bottom, right = box
            assert (bottom - top, right - left) == rep.stages[-1].rf
            seen = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
            clipped = (max(top, 0), max(left, 0), min(bottom, h), min(right, w))
            if 2 <= y <= 4 and 2 <= x <= 3:  # no window of any stage touches its padding: the box is the support
                assert seen == clipped
            else:  # windows on an inner padding see less than the box (the box is the field, padding included)
                assert clipped[:2] <= seen[:2] and seen[2:] <= clipped[2:]


def test_a_crop_is_exactly_the_field_with_the_outside_marked() -> None:
    img = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    padded = np.pad(img, ((4, 4), (4, 4), (0, 0)))
    for box in ((-2, -1, 3, 4), (1, 2, 4, 5), (3, 4, 8, 9)):
        crop, inside = field_crop(img, box)
        top, left, bottom, right = box
        assert np.array_equal(crop, padded[top + 4:bottom + 4, left + 4:right + 4])
        ys, xs = np.mgrid[top:bottom, left:right]
        assert np.array_equal(inside, (ys >= 0) & (ys < 5) & (xs >= 0) & (xs < 6))


def _lines(runner: CliRunner, args: list[str]) -> tuple[int, str]:
    res = runner.invoke(app, ["top", *args])
    return res.exit_code, res.stdout


def test_shards_merge_to_one_run_byte_for_byte(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    (folder / "bad.png").write_bytes(b"not a png")
    args = [str(folder), *STAGES, "--top", "3", "--jsonl"]
    code, whole = _lines(runner, args)
    assert code == 1  # the bad image failed; the search went on
    recs = [json.loads(line) for line in whole.splitlines()]
    assert recs[0]["status"] == "failed" and recs[0]["path"].endswith("bad.png") and recs[-1]["summary"]["images"] == 5
    parts = []
    for i in (1, 2, 3):
        _, text = _lines(runner, [*args, "--shard", f"{i}/3"])
        parts.append(tmp_path / f"part{i}.jsonl")
        parts[-1].write_text(text)
    code, merged = _lines(runner, ["--merge", *map(str, reversed(parts)), "--jsonl"])
    assert code == 1 and merged == whole


def test_processes_give_one_process_answer(runner: CliRunner, folder: Path) -> None:
    args = [str(folder), *STAGES, "--top", "3", "--jsonl"]
    one, two = _lines(runner, args), _lines(runner, [*args, "--processes", "2"])
    assert one[0] == 0 and two == one


def test_dead_channel_and_sheets(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheets"
    out.mkdir()
    code, text = _lines(runner, [str(folder), "conv:w=[[-1,-1,-1],[-1,-1,-1],[-1,-1,-1]]+sobel_x,p=1", "relu",
                                 "--top", "2", "--out-dir", str(out), "--jsonl", "--html", str(tmp_path / "top.html")])
    assert code == 0, text
    health = json.loads(text.splitlines()[-1])["summary"]["channels"]
    page = (tmp_path / "top.html").read_text()  # --html: the channel table linking to each channel's entries
    links = re.findall(r'<tr><td><a href="#(ch\d+)">', page)
    assert links == ["ch0", "ch1"] and all(f'id="{a}"' in page for a in links)
    for rec in map(json.loads, text.splitlines()[:-1]):
        for e in rec["top"]:
            assert f"<td>({e['y']}, {e['x']})</td><td>{tuple(e['field'])}</td>" in page
    assert page.count('<figure class="pic"') == 2  # one contact sheet per channel that has entries
    assert [h["dead"] for h in health] == [True, False]
    assert sorted(p.name for p in out.iterdir()) == ["channel_000_inline3x3.png", "channel_001_sobel_x.png",
                                                     "overview.png"]
    with Image.open(out / "overview.png") as im:
        assert im.mode == "RGB" and im.width >= 360


def test_refusals(runner: CliRunner, folder: Path) -> None:
    res = runner.invoke(app, ["top", str(folder), "conv:w=box", "relu", "--layer", "9"])
    assert res.exit_code == 2 and "--layer 9" in res.output
    res = runner.invoke(app, ["top", str(folder), "relu", "--weights", "w.pt"])
    assert res.exit_code == 2 and "--weights applies to --model networks" in res.output


NET = """
import torch
from torch import nn

torch.manual_seed(0)
chain = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, stride=2))


class Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 2, 3, padding=1), nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.a(x) + self.b(x)


skip = Skip()
wide = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Upsample(scale_factor=2), nn.Conv2d(2, 2, 3))
"""


def test_a_network_layer_equals_a_brute_force_search_and_has_fields(runner: CliRunner, folder: Path,
                                                                     tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    (tmp_path / "nets.py").write_text(NET)
    code, text = _lines(runner, [str(folder), "--model", f"{tmp_path / 'nets.py'}:chain", "--top", "3", "--jsonl"])
    assert code == 0, text
    recs = [json.loads(line) for line in text.splitlines()]
    import importlib.util

    spec = importlib.util.spec_from_file_location("nets_ref", tmp_path / "nets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    maps = []
    for p in sorted(folder.iterdir()):
        x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            maps.append(mod.chain(x)[0].numpy())
    rep = infer((1, 3, 14, 18), parse_stages(["conv:out=2,k=3,p=1", "relu", "maxpool:k=2", "conv:out=2,k=3,s=2"]))
    for c in range(2):
        every = sorted((-float(m[c, y, x]), i, y, x) for i, m in enumerate(maps)
                       for y in range(m.shape[1]) for x in range(m.shape[2]))
        got = recs[c]["top"]
        assert [(e["index"], e["y"], e["x"]) for e in got] == [t[1:] for t in every[:3]]
        assert [e["value"] for e in got] == pytest.approx([-t[0] for t in every[:3]], abs=1e-6)
        assert [e["field"] for e in got] == [list(field_of(rep, 4, e["y"], e["x"])) for e in got]
    assert recs[-1]["summary"]["layer"] == "3"
    out = tmp_path / "sheets"
    out.mkdir()
    res = runner.invoke(app, ["top", str(folder), "--model", f"{tmp_path / 'nets.py'}:wide", "--out-dir", str(out)])
    assert res.exit_code == 2 and "has no receptive-field box" in res.output and not list(out.iterdir())


def _four(folder: Path, tmp_path: Path) -> Path:
    imgs = tmp_path / "four"
    imgs.mkdir()
    for p in sorted(folder.iterdir())[:4]:
        (imgs / p.name).write_bytes(p.read_bytes())
    return imgs


def _boxes_are_the_union(text: str) -> bool:
    """``a(x) + b(x)``'s boxes: the union of the branches' (3x3 padded by 1, and 1x1): the 3x3 window."""
    recs = [json.loads(line) for line in text.splitlines()]
    entries = [e for r in recs[:-1] for e in r["top"]]
    return bool(entries) and all(e["field"] == [e["y"] - 1, e["x"] - 1, e["y"] + 2, e["x"] + 2] for e in entries)


def test_a_residual_network_has_its_boxes(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    (tmp_path / "nets.py").write_text(NET)
    code, text = _lines(runner, [str(_four(folder, tmp_path)), "--model", f"{tmp_path / 'nets.py'}:skip", "--top",
                                 "2", "--jsonl"])
    assert code == 0 and _boxes_are_the_union(text), text


@pytest.mark.slow
def test_network_processes_give_one_process_answer(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    """The searched layer's row, name and field travel in each image's record: two worker processes give one
    process's bytes, for a module:attr network and for its ONNX export."""
    torch = pytest.importorskip("torch")
    (tmp_path / "nets.py").write_text(NET)
    import importlib.util
    import warnings

    spec = importlib.util.spec_from_file_location("nets_skip", tmp_path / "nets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mod.skip, (torch.zeros(1, 3, 14, 18),), str(tmp_path / "skip.onnx"), dynamo=False,
                          dynamic_axes={"input": {2: "h", 3: "w"}}, input_names=["input"])
    imgs = _four(folder, tmp_path)
    for model in (f"{tmp_path / 'nets.py'}:skip", str(tmp_path / "skip.onnx")):
        args = [str(imgs), "--model", model, "--top", "2", "--jsonl"]
        one, two = _lines(runner, args), _lines(runner, [*args, "--processes", "2"])
        assert one[0] == 0 and _boxes_are_the_union(one[1]), one[1]
        assert two == one


def test_a_model_file_runs_as_its_stack(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from featcli.engine.network import Network
    from featcli.engine.plan import Planner, PlanOptions
    from featcli.io.modelfile import ModelMeta, write_model

    stack = ("conv:out=3,k=3,p=1", "relu", "maxpool:k=2", "flatten", "linear:out=2")
    net = Network(Planner(parse_stages(list(stack)), PlanOptions()).plan_for((1, 1, 8, 8)))  # untrained: enough
    model = tmp_path / "m.safetensors"
    write_model(model, net.state_dict(), ModelMeta(stack, ("a", "b"), (1, 8, 8), {"channels": "gray"}, {}, "0.1.0"))
    code, text = _lines(runner, [str(folder), "--model", str(model), "--top", "2", "--jsonl"])
    assert code == 0, text
    recs = [json.loads(line) for line in text.splitlines()]
    assert recs[-1]["summary"]["stage"] == 3 and len(recs) == 4  # the last stage with maps wider than 1x1
    maps = []
    for i, p in enumerate(sorted(folder.iterdir())):
        save = tmp_path / f"{i}.npz"
        res = runner.invoke(app, ["run", str(p), "--model", str(model), "--save", str(save), "--stages", "3", "-q"])
        assert res.exit_code == 0, res.output
        with np.load(save) as z:
            (arr,) = z.values()
        maps.append(arr[0])
    for c in range(3):
        every = sorted((-float(m[c, y, x]), i, y, x) for i, m in enumerate(maps)
                       for y in range(m.shape[1]) for x in range(m.shape[2]))
        assert [(e["index"], e["y"], e["x"], e["value"]) for e in recs[c]["top"]] == \
            [(i, y, x, -v) for v, i, y, x in every[:2]]
        assert all(e["size"] == [8, 8] and e["field"] is not None for e in recs[c]["top"])


def test_options_that_do_not_apply_are_refused(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    part = tmp_path / "p.jsonl"
    part.write_text("")
    for extra, flag in ((["--layer", "2"], "--layer"), (["--processes", "2"], "--processes"),
                        (["--ray", "local"], "--ray"), (["--normalize", "imagenet"], "--normalize")):
        res = runner.invoke(app, ["top", "--merge", str(part), *extra])
        assert res.exit_code == 2 and f"{flag} does not apply" in res.output, res.output
    res = runner.invoke(app, ["top", str(folder), "conv:w=box", "--resize", "pad"])
    assert res.exit_code == 2 and "--resize" in res.output, res.output


def test_a_floor_keeps_exactly_the_best_at_or_above_it() -> None:
    rng = np.random.default_rng(3)
    maps = rng.integers(0, 6, (5, 40)).astype(np.float32)  # many ties
    for k in (1, 4, 40):
        for floor in (None, np.array([0, 2, 3, 5, 7], np.float32), np.array([-np.inf, 1, 4, -np.inf, 0], np.float32)):
            v, p = top_positions(maps, k, floor)
            for c, row in enumerate(maps):
                low = -np.inf if floor is None else floor[c]
                want = sorted((-float(x), i) for i, x in enumerate(row) if x >= low)[:k]
                got = [(-float(a), int(b)) for a, b in zip(v[c], p[c], strict=True) if b >= 0]
                assert got == want, (k, floor, c)
                assert all(a == -np.inf for a, b in zip(v[c], p[c], strict=True) if b < 0)


def test_floors_from_earlier_images_change_nothing(runner: CliRunner, folder: Path) -> None:
    # one runner's floors prune later images; one process per image has none: the same answer, byte for byte
    args = ["top", str(folder), *STAGES, "--top", "7", "--jsonl", "--workers", "1"]
    one = runner.invoke(app, args)
    parts = [runner.invoke(app, [*args, "--shard", f"{i}/5"]).stdout for i in range(1, 6)]
    assert one.exit_code == 0 and all(parts)
    from featcli.run.topmerge import from_records, merge_results, records

    merged = merge_results([from_records(json.loads(line) for line in p.splitlines()) for p in parts])
    assert "\n".join(json.dumps(r, separators=(",", ":")) for r in records(merged)) + "\n" == one.stdout


def test_merged_shards_draw_a_page(runner: CliRunner, folder: Path, tmp_path: Path) -> None:
    args = [str(folder), *STAGES, "--top", "2", "--jsonl", "-q"]
    parts = []
    for i in (1, 2):
        parts.append(tmp_path / f"p{i}.jsonl")
        parts[-1].write_text(runner.invoke(app, ["top", *args, "--shard", f"{i}/2"]).stdout)
    page = tmp_path / "m.html"
    res = runner.invoke(app, ["top", "--merge", *map(str, parts), "--html", str(page)])
    assert res.exit_code == 0, res.output
    text = page.read_text()
    assert text.count('id="ch') == 2 and "over 5 images" in text
