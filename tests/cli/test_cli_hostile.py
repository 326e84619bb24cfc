"""Hostile text and inputs at the CLI: user text prints as text, errors are one line, batches survive.

User data (file names, specs, kernel names, option values) goes through every message path with Rich
markup, emoji codes and control characters in it; it must come out as typed, never interpreted and never
crash the printing. Files given as kernels are never echoed. One bad or unexpected input is one failed
record, never the end of a batch, also with thousands of them under a low open-files limit.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from featcli.cli import app
from featcli.cli.base import one_line, report_error

#: Characters Rich would act on: markup tags, emoji codes, escapes; plus spaces and quotes.
_NASTY = "[]/\\:=,@#!* 'ab"
_FIXED = ["[/x]", "[bold]x[/bold]", "a:smile:b", "holiday [draft]", "[", "]", "\\[x]", "[/]", "[link=x]y",
          ":thumbs_up:", "[red", "a]b[c", "x:y:z", "[[1,2]]"]


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return _FIXED + ["".join(rng.choice(_NASTY) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def _png(path: Path, h: int = 12, w: int = 16) -> Path:
    Image.fromarray(np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)).save(path)
    return path


def _one_error_line(res) -> str:  # type: ignore[no-untyped-def]
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("featcli: error: "), res.stderr
    return lines[0]


@pytest.mark.parametrize("text", _texts(60))
def test_report_error_prints_text_as_typed(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    report_error(f"{text}: reason {text}")
    err = capsys.readouterr().err
    assert err == f"featcli: error: {text}: reason {text}\n"


def test_control_characters_never_reach_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    report_error("a\nb\x1b[31mred\rc")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\r" not in err
    assert one_line("plain [x] text") == "plain [x] text"


@pytest.mark.parametrize("text", _texts(25, seed=1))
def test_names_with_markup_through_every_command(runner: CliRunner, tmp_path: Path, text: str) -> None:
    safe = text.replace("/", "_").replace("\\", "_")
    if safe in ("", ".", ".."):
        safe = f"x{safe}"
    img = _png(tmp_path / f"{safe}.png")
    # info: the name is printed as the heading
    res = runner.invoke(app, ["info", str(img)])
    assert res.exit_code == 0, res.output
    assert f"{safe}.png" in res.stdout
    # run: the name is the table's title; the output name carries it too
    out = tmp_path / f"o{safe}.png"
    res = runner.invoke(app, ["run", str(img), "-k", "sobel_x", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert f"{safe}.png" in res.stdout and f"wrote {out}" in res.stdout
    # a missing file with that name: one error line naming it as typed
    res = runner.invoke(app, ["run", str(tmp_path / f"missing{safe}.png"), "-k", "sobel_x", "-o", str(out)])
    assert res.exit_code == 1
    assert f"missing{safe}.png: no such file" in _one_error_line(res)


@pytest.mark.parametrize("text", _texts(30, seed=2))
def test_markup_in_specs_kernels_and_options(runner: CliRunner, tmp_path: Path, text: str) -> None:
    img = _png(tmp_path / "a.png")
    cases = [
        ["shape", "1x3x16x16", f"conv:w={text}"],
        ["shape", f"1x3x{text}"],
        ["kernels", "show", text],
        ["run", str(img), "-k", text, "-o", str(tmp_path / "o.png")],
        ["run", str(img), "-k", "sobel_x", "--cmap", text, "-o", str(tmp_path / "o.png")],
        ["run", str(img), "-k", "sobel_x", "--norm", text],
        ["info", str(img), "--channels", text],
    ]
    for args in cases:
        res = runner.invoke(app, args)
        assert res.exit_code in (0, 1, 2), (args, res.output)
        if res.exit_code:
            line = _one_error_line(res)
            assert "internal error" not in line, (args, line)
            assert "Traceback" not in res.output


def test_batch_with_markup_names_reports_every_record(runner: CliRunner, tmp_path: Path) -> None:
    names = ["[/x].png", "[bold]b[/bold].png", "c:smile:.png", "d [draft].png", "e.png"]
    folder = tmp_path / "in"
    folder.mkdir()
    for i, n in enumerate(names):
        (folder / n.replace("/", "_")).write_bytes(b"not an image") if i % 2 else _png(folder / n.replace("/", "_"))
    res = runner.invoke(app, ["run", str(folder), "-k", "sobel_x", "--out-dir", str(tmp_path), "--json"])
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == 5 and [r["index"] for r in records] == list(range(5))
    assert sum(r.get("status") == "failed" for r in records) == 2
    assert res.stderr.splitlines()[-1].startswith("3 ok, 2 failed")


# --- errors never echo a file's contents ------------------------------------------------------------------

SECRET = "s3cr3t-T0KEN"


@pytest.mark.parametrize("suffix", ["", ".txt", ".pt", ".npy", ".npz", ".safetensors", ".toml"])
def test_errors_name_a_file_never_its_contents(runner: CliRunner, tmp_path: Path, suffix: str) -> None:
    secret = tmp_path / f"secret{suffix}"
    secret.write_text(f"root:{SECRET}:0:0\nuser={SECRET}\x00PATH={SECRET}\n")
    img = _png(tmp_path / "a.png")
    for args in (["run", str(img), f"conv:w={secret}", "-o", str(tmp_path / "o.png")],
                 ["run", str(img), "-k", str(secret), "-o", str(tmp_path / "o.png")],
                 ["shape", "1x3x16x16", f"conv:w={secret}"],
                 ["kernels", "show", str(secret)],
                 ["kernels", "inspect", str(secret)]):
        res = runner.invoke(app, args)
        assert res.exit_code in (1, 2), (args, res.output)
        assert SECRET not in res.output and str(secret) in res.output, (args, res.output)


# --- arguments that are not files ----------------------------------------------------------------------------


def test_a_long_inline_kernel_is_a_stage_not_a_path(runner: CliRunner, tmp_path: Path) -> None:
    img = _png(tmp_path / "a.png", 20, 20)
    matrix = "[" + ",".join("[" + ",".join(["1"] * 12) + "]" for _ in range(12)) + "]"
    assert len(f"conv:w={matrix}") > 255  # longer than any file name may be
    res = runner.invoke(app, ["run", str(img), f"conv:w={matrix}", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["output"] == [1, 1, 9, 9]


def test_a_name_too_long_for_the_file_system_is_one_clean_line(runner: CliRunner, tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", str(tmp_path / ("x" * 300 + ".png")), "-k", "sobel_x", "-o",
                              str(tmp_path / "o.png")])
    assert res.exit_code == 1
    assert "internal error" not in _one_error_line(res)


# --- usage errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "fragment"), [
    (["run"], "no input image given (the first argument must be an image, folder, glob, sample:NAME or '-'"),
    (["shape"], "missing argument 'INPUT'; see 'featcli shape --help'"),
    (["run", "a.png", "sobel_x"], "'sobel_x' is a kernel, not an image: use -k sobel_x or the stage conv:w=sobel_x"),
    (["run", "a.png", "mxpool:k=2"], "unknown op 'mxpool' (did you mean maxpool?)"),
    (["run", "a.png", "conv", "out=5"], "'out=5' is a key of the stage before it: write conv:out=5 (no space)"),
    (["run", "a.png", "relu", "k=2"], "write relu:k=2"),
    (["shape", "1x3x16x16", "maxpool:2"], "expected key=value, got '2' (did you mean maxpool:k=2?)"),
    (["shape", "1x3x16x16", "conv:w=gaussian:7,1.5"], "inside a stage: w=gaussian(7,1.5))"),
    (["run", "a.png", "-k", "sobel_x", "--pool", "median:k=2"], "(or a pooling stage: maxpool:k=2"),
    (["run", "a.png", "--pad", "1", "relu"], "--pad applies to the -k conv, and no -k is given"),
    (["run", "a.png", "b.png", "-k", "sobel_x", "-o", "x/{nope}.png"], "bad output name template 'x/{nope}.png'"),
    (["run", "a.png", "--forc"], "no such option: --forc (did you mean --force"),
    (["run", "a.png", "--norm", "x"], "'x' is not one of 'per-map', 'stage', 'symmetric', 'percentile'"),
    (["run", "a.png", "--batch-size", "0"], "0 is too small: it must be greater than or equal to 1"),
    (["run", "a.png", "--workers", "9" * 5000], "is not a valid integer"),
    (["info", "a.png", "--pixels", "65"], "65 is too large: it must be less than or equal to 64"),
    (["kernels", "show"], "missing argument 'NAME-OR-SPEC'; see 'featcli kernels show --help'"),
    (["bogus"], "no such command 'bogus'"),
])
def test_usage_errors_are_one_line_exit_2(runner: CliRunner, args: list[str], fragment: str) -> None:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    line = _one_error_line(res)
    assert fragment in line and len(line) < 300, line
    assert res.stdout == ""


def test_stdin_on_a_terminal_is_refused(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from featcli.cli import hints

    tty = types.SimpleNamespace(stdin=types.SimpleNamespace(isatty=lambda: True))
    monkeypatch.setattr(hints, "sys", tty)
    res = runner.invoke(app, ["run", "-", "-k", "sobel_x"])
    assert res.exit_code == 2
    assert "'-' reads an image from stdin, but stdin is a terminal" in _one_error_line(res)


def test_from_file_alone_names_the_inputs(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "list.txt").write_text(f"{_png(tmp_path / 'a.png')}\n{_png(tmp_path / 'b.png')}\n")
    res = runner.invoke(app, ["run", "--from-file", str(tmp_path / "list.txt"), "-k", "sobel_x", "--out-dir",
                              str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 2


# --- one record per input, whatever happens ---------------------------------------------------------------------


def test_single_failure_with_json_prints_its_record(runner: CliRunner, tmp_path: Path) -> None:
    for cmd in (["run", str(tmp_path / "nope.png"), "-k", "sobel_x", "--json"],
                ["info", str(tmp_path / "nope.png"), "--json"]):
        res = runner.invoke(app, cmd)
        assert res.exit_code == 1
        rec = json.loads(res.stdout)
        assert rec == {"path": str(tmp_path / "nope.png"), "index": 0, "status": "failed",
                       "error": f"{tmp_path / 'nope.png'}: no such file"}


def test_an_unexpected_error_is_that_inputs_record(runner: CliRunner, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import featcli.io.describe as describe_mod

    paths = [str(_png(tmp_path / f"{i}.png")) for i in range(4)]
    real = describe_mod.describe

    def flaky(path: str, *a, **kw):  # type: ignore[no-untyped-def]
        if path.endswith("1.png"):
            raise RuntimeError("a featcli bug")
        return real(path, *a, **kw)

    monkeypatch.setattr(describe_mod, "describe", flaky)
    res = runner.invoke(app, ["info", *paths, "--json"])
    assert res.exit_code == 1
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == 4
    assert records[1]["status"] == "failed" and "internal error: RuntimeError: a featcli bug" in records[1]["error"]
    assert all("status" not in r for i, r in enumerate(records) if i != 1)
    assert "1 of 4 images failed" in res.stderr


def test_folders_say_what_they_skipped(runner: CliRunner, tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    for name in ("notes.txt", "b.txt", "meta.json", "README", ".hidden"):
        (tmp_path / name).write_text("x")
    res = runner.invoke(app, ["info", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 1
    assert "featcli: note: skipped 4 file(s) without an image extension (.txt: 2, (no extension): 1, .json: 1)" \
        in res.stderr


def test_thousands_of_bad_files_under_a_low_open_files_limit(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    n_bad = 1500
    for i in range(n_bad):
        (folder / f"b{i:04d}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes([i % 256]) * (i % 50))
    for i in range(3):
        _png(folder / f"good{i}.png")
    script = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        from featcli.cli import main
        sys.argv = ["featcli", *sys.argv[1:]]
        main()
    """)
    for cmd in (["info", str(folder), "--json"],
                ["run", str(folder), "-k", "sobel_x", "--out-dir", str(tmp_path), "--json", "-q"]):
        res = subprocess.run([sys.executable, "-c", script, *cmd], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        records = [json.loads(line) for line in res.stdout.splitlines()]
        assert len(records) == n_bad + 3, res.stderr[-2000:]
        failed = [r for r in records if r.get("status") == "failed"]
        assert len(failed) == n_bad and res.returncode == 1
        assert not any("internal error" in r["error"] or "Too many open files" in r["error"] for r in failed)


# --- damaged image files: the commands' verdicts are Pillow's ------------------------------------------------


def _hostile_corpus(dest: Path) -> list[Path]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("featcli_tests_hostile_cli",
                                                  Path(__file__).parents[1] / "io" / "hostile.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_corpus(dest)  # type: ignore[no-any-return]


def _pillow_decodes(path: Path) -> bool:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with Image.open(path) as img:
                img.load()
        except Exception:  # noqa: BLE001 - any exception is Pillow's refusal
            return False
    return True


@pytest.mark.parametrize("step", [18, pytest.param(6, marks=pytest.mark.slow)])  # every 6th file: 17 CPU-s
def test_info_shape_and_run_give_pillows_verdict(runner: CliRunner, tmp_path: Path, step: int) -> None:
    import shutil

    corpus = _hostile_corpus(tmp_path / "all")[::step]
    folder = tmp_path / "in"
    folder.mkdir()
    files = []
    for i, p in enumerate(corpus):  # one folder, names a batch picks up (every extension is an image's)
        dest = folder / f"{i:04d}{p.suffix if p.suffix else '.png'}"
        shutil.copy(p, dest)
        files.append(dest)
    verdicts = {str(p): _pillow_decodes(p) for p in files}
    assert 10 < sum(verdicts.values()) < len(files) - 10  # both kinds, many of each
    for p in files[:: max(1, len(files) // 60)]:
        for args in (["info", str(p)], ["shape", str(p), "conv"]):
            res = runner.invoke(app, args)
            assert res.exit_code == (0 if verdicts[str(p)] else 1), (args, res.output)
            if res.exit_code:
                assert "internal error" not in _one_error_line(res)
    out = tmp_path / "out"
    res = runner.invoke(app, ["run", str(folder), "-k", "sobel_x", "--out-dir", str(out), "--json", "-q"])
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == len(files)
    for rec in records:
        ok = rec.get("status", "ok") == "ok"
        assert ok == verdicts[rec["path"]], rec
        assert ok or "internal error" not in rec["error"]
    written = {p.name for p in out.iterdir()}
    assert not any(n.startswith(".") for n in written)  # no temp files left
    assert len(written) == sum(verdicts.values())  # one map per decodable file, none for the others


def test_file_names_that_are_not_utf8(runner: CliRunner, tmp_path: Path) -> None:
    name = os.fsdecode(b"bad\xff.png")  # what Python makes of such a name on Linux: a surrogate escape
    img = _png(tmp_path / name)
    out = tmp_path / os.fsdecode(b"out\xfe.png")
    res = runner.invoke(app, ["run", str(img), "-k", "sobel_x", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert Image.open(out).text["featcli:input"].endswith("bad\ufffd.png")
    res = runner.invoke(app, ["info", str(tmp_path / os.fsdecode(b"missing\xff.png"))])
    assert res.exit_code == 1 and "internal error" not in _one_error_line(res)


def test_what_users_write_for_kernels_pools_and_shapes(runner: CliRunner, tmp_path: Path) -> None:
    img = str(_png(tmp_path / "a.png", 20, 20))
    for k in (["-k", "sobel_x+sobel_y"], ["-k", "sobel_x,sobel_y"], ["-k", "sobel_x", "-k", "sobel_y"]):
        res = runner.invoke(app, ["run", img, *k, "--pool", "maxpool:k=2", "--json"])
        assert res.exit_code == 0, res.output
        rec = json.loads(res.stdout)
        assert rec["stages"][0]["spec"] == "conv:w=sobel_x+sobel_y" and rec["output"] == [1, 2, 9, 9]
    for text in ("(1, 3, 224, 224)", "[1, 3, 224, 224]", "torch.Size([1, 3, 224, 224])"):
        res = runner.invoke(app, ["shape", text, "conv:k=3", "--json"])
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["output"] == [1, 3, 222, 222]


def test_a_refused_stage_names_its_image(runner: CliRunner, tmp_path: Path) -> None:
    tiny, ok = _png(tmp_path / "tiny.png", 2, 2), _png(tmp_path / "ok.png")
    res = runner.invoke(app, ["run", str(tiny), str(ok), "-k", "sobel_x", "--out-dir", str(tmp_path / "o"),
                              "--json"])
    assert res.exit_code == 1
    failed = json.loads(res.stdout.splitlines()[0])
    assert failed["error"].startswith(f"{tiny}: stage 1 'conv:w=sobel_x': kernel 3x3 is larger than the input 2x2")
    assert "dilat" not in failed["error"] and "pad it (p=1" in failed["error"]


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_json_of_a_stack_that_overflows_is_standard_json_without_warnings(
        runner: CliRunner, tmp_path: Path, engine: str) -> None:
    """A stage that overflows to inf (or makes NaN): its statistics are ``null`` in the record (JSON has no
    inf), and NumPy's ``overflow encountered`` notes never reach stderr."""
    import warnings

    src = _png(tmp_path / "a.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = runner.invoke(app, ["run", str(src), "conv:w=1e30", "conv:w=1e30", "conv:w=-1e30", "--engine", engine,
                                  "--json", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    assert res.stderr == "", res.stderr
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    rec = json.loads(res.stdout, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert [s["max"] for s in rec["stages"]][1:] == [None, None]
    assert rec["stages"][0]["max"] > 1e29
    json.dumps(rec, allow_nan=False)
