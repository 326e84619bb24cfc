"""Checkpoint files that declare more than they hold (issue #23): refused from their headers, before featcli
decompresses or allocates what they declare. Every file here is a few KB."""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from featcli.errors import WeightsError
from featcli.io import checkpoints
from featcli.io.checkpoints import load_entries
from featcli.kernels.learned import inspect_file, load_weight


def _npy(shape: tuple[int, ...], body: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue() + body


def _zip(p: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(p, "w", compression=compression, compresslevel=9) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return p


def test_an_npz_bomb_is_refused_before_it_is_decompressed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 8 MiB of zeros deflate to ~8 KB: 1000:1, as the 4.6 MB .npz of issue #23 that declared 4 GB
    p = _zip(tmp_path / "bomb.npz", {"w.npy": _npy((2048, 1024), bytes(8 << 20))})
    assert p.stat().st_size < 64 << 10
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, *a, **k: opened.append(a) or real_open(self, *a, **k))
    for read in (lambda: load_entries(p), lambda: load_weight(f"{p}:w"), lambda: inspect_file(p)):
        with pytest.raises(WeightsError, match=r"zip member 'w.npy' declares 8,388,736 bytes from [0-9,]+ "
                                               r"compressed, more than 100:1 \(a zip bomb\?\)"):
            read()
    assert opened == []  # no member was opened, let alone decompressed


def test_small_regular_and_stored_npz_members_still_load(tmp_path: Path) -> None:
    w = np.zeros((4, 3, 3, 3), np.float32)
    w[0, 0, 1, 1] = 1
    buf = io.BytesIO()
    np.save(buf, w)
    for compression in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):  # ~400:1 under the 1 MiB floor; stored
        p = _zip(tmp_path / f"k{compression}.npz", {"w.npy": buf.getvalue()}, compression)
        assert load_weight(f"{p}:w").shape == (4, 3, 3, 3)


def test_an_npy_header_length_is_capped_before_the_header_is_read(tmp_path: Path) -> None:
    # a version 2.0 header may declare up to 4 GiB; numpy reads it whole, then checks its size
    text = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }" + b" " * 100_000 + b"\n"
    raw = b"\x93NUMPY\x02\x00" + struct.pack("<I", len(text)) + text + bytes(16)
    for p in (tmp_path / "big.npy", _zip(tmp_path / "big.npz", {"w.npy": raw}, zipfile.ZIP_STORED)):
        if p.suffix == ".npy":
            p.write_bytes(raw)
        with pytest.raises(WeightsError, match="declares a 100,060-byte .npy header; featcli reads headers up to "
                                               "10,000 bytes"):
            load_entries(p)


def test_a_bad_npy_header_is_not_echoed(tmp_path: Path) -> None:
    text = b"{'descr': 'SECRET-TOKEN', 'fortran_order': False, 'shape': (2,), }\n"
    p = tmp_path / "bad.npy"
    p.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + bytes(8))
    with pytest.raises(WeightsError, match="its header does not parse") as info:
        load_weight(str(p))
    assert "SECRET" not in str(info.value)


def test_a_compressed_member_of_a_torch_checkpoint_is_bounded(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    torch.save({"conv.weight": torch.ones(2, 1, 3, 3)}, good)
    with zipfile.ZipFile(good) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    prefix = next(iter(members)).split("/")[0]
    members[f"{prefix}/data/99"] = bytes(8 << 20)  # a deflated storage that declares 8 MiB
    bomb = _zip(tmp_path / "bomb.pt", members)
    with pytest.raises(WeightsError, match="more than 100:1"):
        load_entries(bomb)
    assert load_entries(good)[1]["conv.weight"].shape == (2, 1, 3, 3)


def test_pickles_are_bounded_before_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zipped, legacy = tmp_path / "z.pt", tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2, 2)}, zipped)
    torch.save({"w": torch.ones(2, 2)}, legacy, _use_new_zipfile_serialization=False)
    monkeypatch.setattr(checkpoints, "MAX_PICKLE_BYTES", 16)
    monkeypatch.setattr(checkpoints, "MAX_LEGACY_BYTES", 16)
    with pytest.raises(WeightsError, match="data.pkl declares [0-9,]+ bytes, above the 0 MiB featcli unpickles"):
        load_entries(zipped)
    with pytest.raises(WeightsError, match="a legacy .pickle. checkpoint of [0-9,]+ bytes is read whole"):
        load_entries(legacy)


def _safetensors(p: Path, header: dict[str, object], data: bytes) -> Path:
    h = json.dumps(header).encode()
    p.write_bytes(struct.pack("<Q", len(h)) + h + data)
    return p


@pytest.mark.parametrize(("offsets", "data", "msg"), [
    ([0, 1 << 40], bytes(16), "past the end of the file's 16 data bytes"),
    ([0, 16], bytes(32), "16 bytes after the last tensor belong to no tensor"),
    ([8, 24], bytes(24), "8 bytes before tensor 'w' belong to no tensor"),
])
def test_safetensors_declared_offsets_are_checked_against_the_file(tmp_path: Path, offsets: list[int],
                                                                   data: bytes, msg: str) -> None:
    shape = [2, 2] if offsets[1] - offsets[0] == 16 else [1 << 18, 1 << 20]
    p = _safetensors(tmp_path / "w.safetensors", {"w": {"dtype": "F32", "shape": shape, "data_offsets": offsets}},
                     data)
    with pytest.raises(WeightsError, match=f"not a valid .safetensors file .*{msg}"):
        load_entries(p)


def test_a_good_safetensors_file_still_loads(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    p = tmp_path / "ok.safetensors"
    save_file({"conv.weight": torch.ones(3, 1, 3, 3), "conv.bias": torch.zeros(3)}, p)
    lw = load_weight(f"{p}:conv.weight")
    assert lw.shape == (3, 1, 3, 3) and lw.bias is not None and lw.source_dtype == "float32"
