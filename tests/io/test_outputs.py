"""Safe outputs: a name taken while writing is never replaced, an image's files are all published or none,
inputs are recognised through links, and no temp file survives a failure."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from featcli.errors import OutputError
from featcli.io import outputs
from featcli.io.outputs import RACED, InputSet, PendingOutputs, atomic_write, check_output


def _bytes(data: bytes) -> Any:
    return lambda fh: fh.write(data)


def _parts(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def test_a_name_created_while_writing_is_never_replaced(tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    with PendingOutputs() as out:
        out.write(target, _bytes(b"mine"))  # checked: the name was free
        target.write_bytes(b"theirs")  # another process wins the name meanwhile
        with pytest.raises(OutputError) as err:
            out.publish()
    assert str(err.value) == f"{target}: {RACED}"
    assert target.read_bytes() == b"theirs"
    assert _parts(tmp_path) == []


def test_without_hard_links_a_reservation_publishes_exclusively(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: Any, dst: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    ok = atomic_write(tmp_path / "a.bin", _bytes(b"a"))
    assert ok.read_bytes() == b"a"
    target = tmp_path / "b.bin"
    with PendingOutputs() as out:
        out.write(target, _bytes(b"mine"))
        target.write_bytes(b"theirs")
        with pytest.raises(OutputError, match="another process"):
            out.publish()
    assert target.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_force_replaces_and_an_error_on_link_is_not_mistaken_for_no_links(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.png"
    target.write_bytes(b"old")
    atomic_write(target, _bytes(b"new"), force=True)
    assert target.read_bytes() == b"new"

    def full(src: Any, dst: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(OutputError, match="cannot write: No space left"):
        atomic_write(tmp_path / "y.png", _bytes(b"y"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_one_failure_unpublishes_the_files_already_published(tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "a.npz"
    with PendingOutputs() as out:
        out.write(first, _bytes(b"png"))
        out.write(second, _bytes(b"npz"))
        second.write_bytes(b"theirs")  # the second name is taken before publishing
        with pytest.raises(OutputError, match="another process"):
            out.publish()
    assert not first.exists()  # ours, removed: all or none
    assert second.read_bytes() == b"theirs"  # theirs, kept
    assert _parts(tmp_path) == []


def test_a_failing_write_leaves_nothing_and_undo_spares_other_files(tmp_path: Path) -> None:
    def boom(fh: Any) -> None:
        fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="No space"), PendingOutputs() as out:
        out.write(tmp_path / "a.png", _bytes(b"png"))
        out.write(tmp_path / "a.npz", boom)
    assert list(tmp_path.iterdir()) == []
    # Undo removes a published file only while it is still the file this run published.
    with pytest.raises(KeyboardInterrupt), PendingOutputs(force=True) as out:
        out.write(tmp_path / "b.png", _bytes(b"mine"))
        out.publish()
        (tmp_path / "b.png").unlink()
        (tmp_path / "b.png").write_bytes(b"theirs")
        raise KeyboardInterrupt
    assert (tmp_path / "b.png").read_bytes() == b"theirs"


def test_one_image_cannot_write_one_name_twice(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    with pytest.raises(OutputError, match="written twice"), PendingOutputs() as out:
        out.write(tmp_path / "a.png", _bytes(b"1"))
        out.write(tmp_path / "sub" / ".." / "a.png", _bytes(b"2"))
    assert [p.name for p in tmp_path.iterdir()] == ["sub"]


def test_inputs_are_known_through_links_and_never_overwritten(tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(b"input")
    os.link(src, tmp_path / "hard.png")
    (tmp_path / "soft.png").symlink_to(src)
    inputs = InputSet([str(src), "-"])
    for name in ("in.png", "hard.png", "soft.png"):
        with pytest.raises(OutputError, match="input"):
            check_output(tmp_path / name, force=True, inputs=inputs)
    assert inputs.find(tmp_path / "other.png") is None
    assert check_output(tmp_path / "other.png", inputs=inputs) == tmp_path / "other.png"


_RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from featcli.errors import OutputError
    from featcli.io.outputs import PendingOutputs
    folder, me, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    pending = []
    for i in range(n):  # check and write every name while all are free, as two runs started together do
        out = PendingOutputs()
        out.write(folder / f"{i}.png", lambda fh: fh.write(me.encode() * 1000))
        pending.append(out)
    (folder / f"ready-{me}").touch()
    while not (folder / "go").exists():
        time.sleep(0.001)
    for i, out in enumerate(pending):
        try:
            out.publish()
            print(i, "won", flush=True)
        except OutputError as exc:
            print(i, "lost", exc, flush=True)
""")


def test_two_processes_racing_on_the_same_names_never_overwrite(tmp_path: Path) -> None:
    n = 40
    env = {**os.environ, "PYTHONPATH": str(Path(outputs.__file__).parents[2])}
    procs = {me: subprocess.Popen([sys.executable, "-c", _RACER, str(tmp_path), me, str(n)], env=env,
                                  stdout=subprocess.PIPE, text=True) for me in ("A", "B")}
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready-{me}").exists() for me in procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values())
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results = {me: p.communicate(timeout=60)[0].splitlines() for me, p in procs.items()}
    assert all(p.returncode == 0 for p in procs.values())
    won = {me: {int(line.split()[0]) for line in lines if " won" in line} for me, lines in results.items()}
    lost = {me: [line for line in lines if " lost " in line] for me, lines in results.items()}
    assert won["A"] | won["B"] == set(range(n)) and not won["A"] & won["B"]
    assert all(RACED in line for lines in lost.values() for line in lines)
    assert len(lost["A"]) == len(won["B"]) and len(lost["B"]) == len(won["A"])
    for me, names in won.items():  # each file is whole and is the winner's
        for i in names:
            assert (tmp_path / f"{i}.png").read_bytes() == me.encode() * 1000
    assert _parts(tmp_path) == []
