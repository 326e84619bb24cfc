"""`featcli shape` through the CLI: table, --json, stdin queries, solver, images, every error path."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featcli.cli import app

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "samples" / "shapes.png")  # 320x240 RGB
TUTORIAL = ["1x3x640x640", "conv:out=5,k=3x5,s=1x2,p=2"]
STAGE_KEYS = {"index", "spec", "op", "in", "out", "params", "macs", "rf", "jump", "formula", "notes",
              "config", "solved", "options", "branch", "bytes"}
TOP_KEYS = {"input", "source", "stages", "output", "params", "macs", "memory"}


def shape(runner: CliRunner, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    res = runner.invoke(app, ["shape", *args], input=stdin)
    assert "Traceback" not in res.output
    return res


def test_table(runner: CliRunner) -> None:
    res = shape(runner, *TUTORIAL, "maxpool:k=2")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "1x5x642x320" in out and "1x5x321x160" in out
    assert "H: floor((640 + 2*2 - 1*(3-1) - 1)/1) + 1 = 642" in out
    assert "W: floor((640 + 2*2 - 1*(5-1) - 1)/2) + 1 = 320" in out
    assert re.search(r"total\s+1x5x321x160\s+230\s+47\.25M", out)  # human units; --json has the integers
    assert "note: stage 1 conv:out=5,k=3x5,s=1x2,p=2: W: 1 column dropped" in out
    for col in ("stage", "output", "params", "MACs", "RF", "jump", "formula"):
        assert col in out


def test_json(runner: CliRunner) -> None:
    res = shape(runner, *TUTORIAL, "--json")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert set(obj) == TOP_KEYS and set(obj["stages"][0]) == STAGE_KEYS
    assert obj["output"] == [1, 5, 642, 320] and obj["input"] == [1, 3, 640, 640] and obj["source"] is None
    st = obj["stages"][0]
    assert st["spec"] == TUTORIAL[1] and st["op"] == "conv" and st["in"] == [1, 3, 640, 640]
    assert st["params"] == obj["params"] == 230 and st["macs"] == obj["macs"] == 230 * 642 * 320
    assert st["rf"] == [3, 5] and st["jump"] == [1, 2]
    assert st["config"]["p"] == [[2, 2], [2, 2]]
    assert st["solved"] is None and st["options"] is None


def test_every_json_key_is_documented() -> None:
    doc = (ROOT / "docs" / "shape.md").read_text()
    for key in TOP_KEYS | STAGE_KEYS:
        assert f"| `{key}`" in doc or f"`{key}`," in doc or f", `{key}`" in doc, key


def test_no_stages_and_aliases(runner: CliRunner) -> None:
    res = shape(runner, "28x28", "--json")
    assert json.loads(res.stdout)["output"] == [1, 1, 28, 28]
    res = shape(runner, "3x32x32", "Conv2d:kernel_size=3,stride=2,padding=1", "--json")
    assert json.loads(res.stdout)["output"] == [1, 3, 16, 16]


def test_solver(runner: CliRunner) -> None:
    res = shape(runner, "1x3x64x64", "conv:k=3,p=?")
    assert res.exit_code == 0, res.output
    assert "1x3x64x64" in res.stdout and "p=? -> p=1" in res.stdout and "options H: p=0 -> 62" in res.stdout
    res = shape(runner, "1x3x64x64", "conv:k=3,s=2,p=?", "--solve", "33x33", "--json")
    st = json.loads(res.stdout)["stages"][0]
    assert st["out"] == [1, 3, 33, 33] and st["solved"] == {"p": [2, 2]}
    res = shape(runner, "1x8x16x16", "convt:k=3,s=2,p=1,op=?", "--json")
    st = json.loads(res.stdout)["stages"][0]
    assert st["out"] == [1, 8, 32, 32] and st["solved"] == {"op": [1, 1]}
    assert st["options"]["H"] == [{"op": 0, "out": 31}, {"op": 1, "out": 32}]


def test_image_input_and_loading_options(runner: CliRunner) -> None:
    res = shape(runner, SAMPLE, "conv:k=3", "--json")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["input"] == [1, 3, 240, 320] and obj["source"] == SAMPLE
    res = shape(runner, SAMPLE, "--channels", "gray", "--max-side", "100", "--json")
    assert json.loads(res.stdout)["input"] == [1, 1, 75, 100]
    res = shape(runner, SAMPLE)
    assert f"input {SAMPLE}" in res.stdout


def test_named_kernels(runner: CliRunner) -> None:
    pytest.importorskip("featcli.kernels")
    res = shape(runner, "1x3x64x64", "conv:w=sobel_x+sobel_y", "magnitude", "--json")
    assert res.exit_code == 0, res.output
    assert [s["out"] for s in json.loads(res.stdout)["stages"]] == [[1, 2, 62, 62], [1, 1, 62, 62]]
    res = shape(runner, "1x3x64x64", "conv:w=sobel_q")
    assert res.exit_code == 1 and "stage 1 'conv:w=sobel_q'" in res.output and "not found" in res.output


def test_stdin_queries(runner: CliRunner) -> None:
    lines = [
        "# a comment line",
        "1x3x640x640 conv:out=5,k=3x5,s=1x2,p=2   # the tutorial",
        "",
        "28x28 conv:k=5 conv:k=5 conv:k=5 conv:k=5 conv:k=5 conv:k=5 conv:k=5",
        "1x3x64x64 conv:bogus=1",
        f"{SAMPLE} maxpool:k=2",
        "1x3x64x64 'conv:k=3,p=?'".replace("'", ""),
    ]
    res = shape(runner, "-", stdin="\n".join(lines) + "\n")
    assert res.exit_code == 1, res.output
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(out) == 5
    assert out[0]["output"] == [1, 5, 642, 320] and set(out[0]) == TOP_KEYS - {"memory"}  # one query's --json only
    assert out[1] == {"error": "stage 7 'conv:k=5': kernel 5x5 is larger than the input 4x4 (H: 5 > 4; W: 5 > 4); "
                               "pad it (p=1, or p=same) or use a smaller kernel",
                      "line": 4}
    assert out[2]["line"] == 5 and "unknown key 'bogus' for conv; valid keys" in out[2]["error"]
    assert out[3]["output"] == [1, 3, 120, 160] and out[3]["source"] == SAMPLE
    assert out[4]["stages"][0]["solved"] == {"p": [1, 1]}


def test_stdin_all_good_and_empty(runner: CliRunner) -> None:
    res = shape(runner, "-", stdin="1x1x8x8 conv\n8x8\n")
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["output"] for x in res.stdout.splitlines()] == [[1, 1, 6, 6], [1, 1, 8, 8]]
    res = shape(runner, "-", stdin="")
    assert res.exit_code == 0 and res.stdout == ""
    res = shape(runner, "-", "--channels", "gray", stdin=f"{SAMPLE}\n")
    assert json.loads(res.stdout)["input"] == [1, 1, 240, 320]


def test_stdin_answers_each_query_before_the_next_arrives() -> None:
    """A script can keep `featcli shape -` open and ask one query at a time (no output buffering stall)."""
    proc = subprocess.Popen([sys.executable, "-m", "featcli", "shape", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=ROOT)
    assert proc.stdin is not None and proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)  # a stalled answer fails the test instead of hanging it
    watchdog.start()
    try:
        for query, key, expected in [("1x3x64x64 conv:k=3", "output", [1, 3, 62, 62]),
                                     ("2x2 conv:k=3", "line", 2), ("7x7 maxpool:k=2", "output", [1, 1, 3, 3])]:
            proc.stdin.write(f"{query}\n".encode())
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())[key] == expected
        proc.stdin.close()
        assert proc.wait(timeout=30) == 1
    finally:
        watchdog.cancel()
        proc.kill()


@pytest.mark.parametrize(("args", "code", "fragment"), [
    (["1x3x64x64", "pool:k=2"], 2, "unknown op 'pool'; valid ops: conv, convt, maxpool, avgpool"),
    (["1x3x64x64", "conv:q=2"], 2, "valid keys: out, k, s, p, d, g, bias, pm, w, mode"),
    (["1x3x64x64", "conv:k=3x"], 2, "k='3x': expected N or HxW"),
    (["3x64x64", "conv", "conv:k=0"], 2, "stage 2 'conv:k=0'"),
    # hints: what a refused input or stage was meant to be
    (["224x224x3", "conv"], 2, "'224x224x3' looks like HxWxC (channels last); featcli reads CxHxW"),
    (["224x224x3"], 2, "write 1x3x224x224 (or 1x224x224x3 to keep 224 channels)"),
    (["1x3x32", "conv"], 2, "'1x3x32' is CxHxW, 1 channel of 3x32 pixels; if you meant N=1, C=3 and a 32x32 "
                            "image, write 1x3x32x32"),
    (["1x3x8x8", "conv", "k=3"], 2, "'k=3' is a key of the stage before it: write conv:k=3 (no space)"),
    (["1x3x8x8", "conv:k=3;s=2"], 2, "keys are separated by ',', not ';': write conv:k=3,s=2"),
    (["1x3x8x8", "conv:k=3,strde=2"], 2, "unknown key 'strde' for conv (did you mean s=2 (stride)?)"),
    (["1x3x8x8", "maxpool:k=2,kernal=2"], 2, "(did you mean k=2 (kernel)?)"),
    (["-", "--format", "csv"], 2, "with INPUT '-', each line is answered as one JSON object (docs/shape.md); "
                                  "--format csv cannot apply"),
    (["-", "--dtype", "float16", "--code"], 2, "--code, --dtype float16 cannot apply: leave them out"),
    (["1x3x64x64x2", "conv"], 2, "expected NxCxHxW, CxHxW or HxW"),
    (["1x3x5x5", "conv:k=7"], 1, "stage 1 'conv:k=7': kernel 7x7 is larger than the input 5x5"),
    (["1x3x8x8", "conv:g=2"], 1, "in channels 3 not divisible by groups g=2"),
    (["1x3x8x8", "conv:s=2,p=same"], 1, "p=same is not supported for strided convolutions"),
    (["1x3x8x8", "convt:s=2,op=2"], 1, "must be smaller than either stride"),
    (["1x3x8x8", "maxpool:k=2,p=2"], 1, "padding 2 must be at most half the kernel size 2"),
    (["1x3x8x8", "flatten", "maxpool:k=2"], 1, "maxpool needs a 4-D"),
    (["1x3x8x8", "conv:k=2,p=?"], 1, "no p gives H = 8"),
    (["missing.png", "conv"], 1, "missing.png: no such file"),
    (["1x3x8x8", "conv", "--solve", "4x4"], 2, "--solve needs exactly one stage with p=? or op=?"),
    (["1x3x8x8", "conv:p=?", "--solve", "4xq"], 2, "--solve='4xq'"),
    (["-", "conv"], 2, "stages and --solve go on the stdin lines"),
    (["1x3x8x8", "--channels", "purple"], 2, "'purple' is not one of 'rgb', 'gray', 'keep'"),
    (["1x3x8x8", "--frame", "-1"], 2, "greater than or equal to 0"),
    (["1x3x8x8", "--max-side", "big"], 2, "valid integer"),
    ([], 2, "missing argument 'INPUT'; see 'featcli shape --help'"),
])
def test_errors(runner: CliRunner, args: list[str], code: int, fragment: str) -> None:
    res = shape(runner, *args)
    assert res.exit_code == code, res.output
    assert fragment in " ".join(res.output.split()), res.output
    # every error, usage errors included, is one line on stderr; stdout has nothing, or (a refused stack,
    # fail-soft) the rows before the refused stage
    assert res.stderr.startswith("featcli: error: ") and res.stderr.count("\n") == 1, res.stderr
    assert res.stdout == "" or (code == 1 and "so far" in res.stdout), res.stdout


def test_help_has_an_example(runner: CliRunner) -> None:
    res = runner.invoke(app, ["shape", "--help"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "Example: featcli shape 1x3x640x640 conv:out=5,k=3x5,s=1x2,p=2 maxpool:k=2" in text
    assert "p=?" in text and "--solve" in text and "--channels" in text and "--json" in text


def test_help_lists_every_op_and_its_keys_from_the_registry(runner: CliRunner) -> None:
    from featcli.stages.registry import REGISTRY

    res = runner.invoke(app, ["shape", "--help"])
    assert res.exit_code == 0, res.output
    words = set(re.findall(r"[a-z][a-z0-9]*", res.output))
    assert {d.name for d in REGISTRY.values()} <= words, {d.name for d in REGISTRY.values()} - words
    text = " ".join(res.output.replace("│", " ").split())
    for d in REGISTRY.values():
        if d.keys:
            assert f"{d.name} {','.join(d.keys)}" in text, d.name


# --- golden tables: `pytest --update-golden` rewrites tests/golden/shape/*.txt ------------------------
GOLDEN_STACKS = {
    "tutorial": ["1x3x640x640", "conv:out=5,k=3x5,s=1x2,p=2", "maxpool:k=2"],
    "solve_padding": ["1x3x64x64", "conv:k=3,s=2,p=?", "conv:k=3,p=?"],
    "solve_output_padding": ["1x8x16x16", "convt:k=3,s=2,p=1,op=?"],
    "ceil_mode": ["1x3x8x8", "maxpool:k=3,s=2,p=1,ceil=1", "avgpool:k=2,ceil=1"],
    "classifier_head": ["1x3x32x32", "conv:out=16,k=3,p=1", "relu", "maxpool:k=2", "flatten", "linear:out=10"],
    "activations": ["1x3x32x32", "conv:out=8", "leakyrelu:slope=0.2", "prelu", "softmax", "bn", "dropout"],
}


@pytest.mark.parametrize("name", list(GOLDEN_STACKS))
def test_table_matches_golden(runner: CliRunner, golden, name: str) -> None:  # type: ignore[no-untyped-def]
    res = shape(runner, *GOLDEN_STACKS[name])
    assert res.exit_code == 0, res.output
    golden(f"shape/{name}", res.stdout)


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("name", ["tutorial", "classifier_head", "solve_padding"])
def test_table_fits_the_terminal(runner: CliRunner, golden, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
                                 name: str, columns: int) -> None:
    from featcli.cli import console

    monkeypatch.setenv("COLUMNS", str(columns))
    console._consoles.cache_clear()
    res = shape(runner, *GOLDEN_STACKS[name])
    assert res.exit_code == 0, res.output
    golden(f"shape/{name}_{columns}", res.stdout)
    # the table and the memory and note lines under it: all within the terminal's width
    assert max(len(line.rstrip()) for line in res.stdout.splitlines()) <= columns
    # numbers and shapes are whole: every stage's output shape appears intact on its row
    assert "1x5x642x320" in res.stdout or name != "tutorial"


def test_stdin_mode_hands_the_streams_to_the_service(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command parses and maps the failure count to the exit code; the service does the rest."""
    import featcli.shape.service as service

    calls: list[tuple[object, ...]] = []
    failures = [0, 3]  # what the fake service reports, call by call

    def fake_serve(stdin, stdout, inputs, *, kernels_dir=None):  # type: ignore[no-untyped-def]
        calls.append((stdin, stdout, kernels_dir))
        assert isinstance(inputs, service.InputResolver)
        assert inputs.options().max_side == 9  # the image-loading options reach the resolver
        return failures.pop(0)

    monkeypatch.setattr(service, "serve", fake_serve)
    for code in (0, 1):
        res = runner.invoke(app, ["shape", "-", "--kernels-dir", "kdir", "--max-side", "9"], input="")
        assert res.exit_code == code, res.output
    assert [c[2] for c in calls] == ["kdir", "kdir"]
    assert all(hasattr(c[0], "read") and hasattr(c[1], "write") for c in calls)


def test_a_refused_stack_shows_the_rows_before_it(runner: CliRunner) -> None:
    res = shape(runner, "1x64x56x56", "save:a", "conv:out=128,k=3,s=2,p=1", "bn", "add:a", "relu")
    assert res.exit_code == 1
    assert re.search(r"3\s+bn\s+1x128x28x28", res.stdout) and "so far" in res.stdout and "add:a" not in res.stdout
    assert res.stderr == ("featcli: error: stage 4 'add:a': add needs equal shapes, but the current tensor is "
                          "1x128x28x28 (stage 3 'bn') and a is 1x64x56x56 (saved at stage 1 'save:a'); give the "
                          "saved tensor a side branch that matches, e.g. 'add:a(conv:out=128,k=1,s=2 bn)'\n")
    as_json = shape(runner, "1x64x56x56", "save:a", "maxpool:k=2", "add:a", "--json")
    assert as_json.exit_code == 1 and as_json.stdout == ""


def test_resnet18_from_its_stack_file(runner: CliRunner) -> None:
    res = shape(runner, "1x3x224x224", "@resnet18", "--json")
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout)
    assert obj["params"] == 11_689_512 and obj["output"] == [1, 1000]
    table = shape(runner, "1x3x224x224", "@resnet18").stdout
    assert re.search(r"total\s+1x1000\s+11\.69M\s+1\.817G", table)
    assert "  a: conv:out=128,k=1,s=2,bias=0" in table and "add:a(rows 27-28)" in table


def test_a_side_branch_split_by_the_shell_is_one_stage(runner: CliRunner) -> None:
    split = shape(runner, "1x8x16x16", "save:a", "conv:out=8,k=3,s=2,p=1", "add:a(conv:out=8,k=1,s=2", "bn)",
                  "--json")
    whole = shape(runner, "1x8x16x16", "save:a", "conv:out=8,k=3,s=2,p=1", "add:a(conv:out=8,k=1,s=2 bn)",
                  "--json")
    assert split.exit_code == 0, split.output
    assert json.loads(split.stdout)["stages"][-1]["spec"] == "add:a(conv:out=8,k=1,s=2 bn)"
    assert json.loads(split.stdout)["params"] == json.loads(whole.stdout)["params"] == 8 * 8 * 9 + 8 + 64 + 8 + 16


def test_stdin_lines_take_branches_and_stacks() -> None:
    from featcli.shape.service import serve

    out = io.StringIO()
    lines = b"1x8x32x32 save:a maxpool:k=2 convt:out=8,k=2,s=2 cat:a\n1x3x224x224 @resnet18\n4x4 add:a(relu)\n"
    assert serve(io.BytesIO(lines), out) == 1
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers[0]["output"] == [1, 16, 32, 32] and answers[1]["params"] == 11_689_512
    assert "no tensor is saved as 'a'" in answers[2]["error"]


def test_stdin_lines_get_the_hints_of_the_command_line() -> None:
    """A ``shape -`` line has no shell: quotes stay in the tokens, and a space splits a stage from its keys."""
    from featcli.shape.service import serve

    lines = b'1x3x8x8 "conv:k=3" relu\n1x3x8x8 conv k=3\n1x3x8x8 \'maxpool:k=2\'\n1x3x8x8 conv:k=3\n'
    out = io.StringIO()
    assert serve(io.BytesIO(lines), out) == 3
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert "quotes are shell syntax, not part of a stage" in answers[0]["error"]
    assert answers[0]["error"].endswith("write conv:k=3")
    assert answers[1]["error"] == "'k=3' is a key of the stage before it: write conv:k=3 (no space)"
    assert answers[2]["error"].endswith("write maxpool:k=2")
    assert answers[3]["output"] == [1, 3, 6, 6]


def test_a_three_d_input_that_is_not_suspect_is_taken_as_chw(runner: CliRunner) -> None:
    """Only HxWxC-looking and NxCxH-looking 3-D inputs are refused; written with four sizes, any is taken."""
    for text, want in (("3x64x64", [1, 3, 64, 64]), ("1x224x224x3", [1, 224, 224, 3]), ("8x8x3", [1, 8, 8, 3]),
                       ("1x1x3x32", [1, 1, 3, 32])):
        res = shape(runner, text, "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.stdout)["input"] == want
