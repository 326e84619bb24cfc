"""The one kernel cache: results are reused while their files are unchanged, and fresh after an edit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from featcli.enums import KernelMode
from featcli.io import checkpoints
from featcli.kernels import cache, conv_weight, conv_weight_shape, expand, stage_kernels, vector_length

SUM = KernelMode.SUM


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    cache.clear()


def bump(path: Path) -> None:
    """A later modification time, as an edit a moment later would give (file systems tick coarsely)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def rewrite(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    bump(path)


@pytest.fixture
def count_reads(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Counts checkpoint reads (:func:`featcli.io.checkpoints.load_entries`, the one reader of every format)."""
    calls: list[str] = []
    real = checkpoints.load_entries

    def counting(path: Any, **kwargs: Any) -> Any:
        calls.append(str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(checkpoints, "load_entries", counting)
    return lambda: len(calls)


def test_repeated_calls_are_one_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    from featcli.kernels import refs

    calls = []
    real = refs._stage
    monkeypatch.setattr(refs, "_stage", lambda *a: calls.append(a) or real(*a))
    for _ in range(3):
        assert conv_weight_shape(["sobel_x", "sobel_y"], 3, SUM) == (2, 3, 3, 3, 1)
    assert conv_weight(["sobel_x", "sobel_y"], 3, SUM).labels == ["sobel_x", "sobel_y"]
    assert len(calls) == 1
    conv_weight_shape(["sobel_x"], 3, SUM)  # other references: their own entry
    assert len(calls) == 2


def test_callers_get_their_own_list() -> None:
    first = stage_kernels(["sobel_x", "sobel_y"])
    assert isinstance(first, list)
    first.clear()
    again = stage_kernels(["sobel_x", "sobel_y"])
    assert isinstance(again, list) and [k.name for k in again] == ["sobel_x", "sobel_y"]


def test_text_kernel_in_kernels_dir_edited(tmp_path: Path) -> None:
    d = tmp_path / "mine"
    d.mkdir()
    k = d / "edge.txt"
    k.write_text("-1 0 1\n-2 0 2\n-1 0 1\n", encoding="utf-8")
    assert conv_weight_shape(["edge"], 3, SUM, str(d)) == (1, 3, 3, 3, 1)
    rewrite(k, "1 2 3 2 1\n" * 5)
    assert conv_weight_shape(["edge"], 3, SUM, str(d)) == (1, 3, 5, 5, 1)
    rewrite(k, "2 4 6 4 2\n" * 5)  # same size: the values still change
    got = stage_kernels(["edge"], str(d))
    assert isinstance(got, list) and got[0].weights[0] == (2, 4, 6, 4, 2)


def test_toml_in_kernels_dir_edited_added_and_removed(tmp_path: Path) -> None:
    d = tmp_path / "lib"
    d.mkdir()
    t = d / "extra.toml"
    t.write_text('[[kernel]]\nname = "blob"\nweights = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]\n', encoding="utf-8")
    assert conv_weight_shape(["blob"], 1, SUM, str(d)) == (1, 1, 3, 3, 1)
    rewrite(t, '[[kernel]]\nname = "blob"\nweights = [[1, 2, 1]]\n')
    assert conv_weight_shape(["blob"], 1, SUM, str(d)) == (1, 1, 1, 3, 1)
    (d / "more.toml").write_text('[[kernel]]\nname = "wide"\nweights = [[1, 1, 1, 1, 1]]\n', encoding="utf-8")
    bump(d)
    assert conv_weight_shape(["wide"], 1, SUM, str(d)) == (1, 1, 1, 5, 1)
    (d / "more.toml").unlink()
    bump(d)
    with pytest.raises(Exception, match="'wide' not found"):
        conv_weight_shape(["wide"], 1, SUM, str(d))


def test_named_files_edited(tmp_path: Path) -> None:
    k = tmp_path / "k.txt"
    k.write_text("1 0 -1\n", encoding="utf-8")
    assert conv_weight_shape([str(k)], 1, SUM) == (1, 1, 1, 3, 1)
    rewrite(k, "1 0 -1\n2 0 -2\n1 0 -1\n")
    assert conv_weight_shape([str(k)], 1, SUM) == (1, 1, 3, 3, 1)
    t = tmp_path / "two.toml"
    t.write_text('[[kernel]]\nname = "a"\nweights = [[1]]\n[[kernel]]\nname = "b"\nweights = [[1, 2, 1]]\n',
                 encoding="utf-8")
    assert conv_weight_shape([f"{t}:b"], 1, SUM) == (1, 1, 1, 3, 1)
    rewrite(t, '[[kernel]]\nname = "a"\nweights = [[1]]\n[[kernel]]\nname = "b"\nweights = [[1], [2], [1]]\n')
    assert conv_weight_shape([f"{t}:b"], 1, SUM) == (1, 1, 3, 1, 1)


def test_relative_refs_follow_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in [("a", "1 2 1\n"), ("b", "1\n2\n1\n")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "k.txt").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path / "a")
    assert conv_weight_shape(["k.txt"], 1, SUM) == (1, 1, 1, 3, 1)
    monkeypatch.chdir(tmp_path / "b")
    assert conv_weight_shape(["k.txt"], 1, SUM) == (1, 1, 3, 1, 1)


def test_env_kernels_dir_is_part_of_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in [("a", "1 2 1\n"), ("b", "1\n2\n1\n")]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text(text, encoding="utf-8")
    monkeypatch.setenv("FEATCLI_KERNELS_DIR", str(tmp_path / "a"))
    assert conv_weight_shape(["mine"], 1, SUM) == (1, 1, 1, 3, 1)
    monkeypatch.setenv("FEATCLI_KERNELS_DIR", str(tmp_path / "b"))
    assert conv_weight_shape(["mine"], 1, SUM) == (1, 1, 3, 1, 1)


def test_failures_are_not_cached(tmp_path: Path) -> None:
    k = tmp_path / "late.txt"
    with pytest.raises(Exception, match="not found"):
        conv_weight_shape([str(k)], 1, SUM)
    k.write_text("1 1\n", encoding="utf-8")
    assert conv_weight_shape([str(k)], 1, SUM) == (1, 1, 1, 2, 1)


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache, "MAX_ENTRIES", 4)
    for size in (1, 3, 5, 7, 9, 11):
        conv_weight_shape([f"box:size={size}"], 1, SUM)
    assert cache.size() <= 4


# --- checkpoints ------------------------------------------------------------------------------------
def _save(path: Path, out_channels: int, slopes: int) -> None:
    import torch

    tensors = {"conv1.weight": torch.randn(out_channels, 3, 3, 3), "conv1.bias": torch.randn(out_channels),
               "prelu1.weight": torch.full((slopes,), 0.25)}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    bump(path)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_read_once_then_again_after_a_change(tmp_path: Path, suffix: str,
                                                        count_reads: Callable[[], int]) -> None:
    pytest.importorskip("torch")
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    p = tmp_path / f"net{suffix}"
    _save(p, 4, 4)
    ref = f"{p}:conv1.weight"
    for _ in range(3):
        assert conv_weight_shape([ref], 3, SUM) == (4, 3, 3, 3, 1)
    cw = conv_weight([ref], 3, SUM)
    assert cw.weight.shape == (4, 3, 3, 3) and count_reads() == 1
    cw.weight.zero_()  # the caller's own copy: the cached layer is untouched
    assert float(conv_weight([ref], 3, SUM).weight.abs().sum()) > 0
    for _ in range(3):
        assert vector_length(f"{p}:prelu1.weight") == 4
    assert count_reads() == 2  # the slopes are their own entry, read once
    _save(p, 8, 6)
    assert conv_weight_shape([ref], 3, SUM) == (8, 3, 3, 3, 1)
    assert conv_weight([ref], 3, SUM).bias.shape == (8,)  # type: ignore[union-attr]
    assert vector_length(f"{p}:prelu1.weight") == 6
    assert count_reads() == 4


def test_npy_kernels_follow_the_file(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    p = tmp_path / "bank.npy"
    np.save(p, np.ones((2, 3, 3)))
    assert [k.name for k in expand(str(p))] == ["bank[0]", "bank[1]"]  # type: ignore[union-attr]
    assert conv_weight_shape([str(p)], 1, SUM) == (2, 1, 3, 3, 1)
    np.save(p, np.ones((3, 5, 5)))
    bump(p)
    assert conv_weight_shape([str(p)], 1, SUM) == (3, 1, 5, 5, 1)


# --- end to end: a long `featcli shape -` session sees an edit -------------------------------------
def test_shape_service_sees_an_edited_kernel_file(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("featcli")
    if not exe.exists():
        pytest.skip(f"no featcli script beside {sys.executable}")
    k = tmp_path / "k.txt"
    k.write_text("-1 0 1\n-2 0 2\n-1 0 1\n", encoding="utf-8")
    line = f"1x3x32x32 conv:w={k}\n"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with subprocess.Popen([str(exe), "shape", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(line)
            proc.stdin.flush()
            first = json.loads(proc.stdout.readline())
            rewrite(k, "1 1 1 1 1\n" * 5)
            proc.stdin.write(line)
            proc.stdin.flush()
            second = json.loads(proc.stdout.readline())
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
    assert first.get("output") == [1, 1, 30, 30], first
    assert second.get("output") == [1, 1, 28, 28], second
    assert proc.returncode == 0
