"""Hostile ``featcli shape`` queries (issue #23): one bad line is one error record, lines and nesting are
bounded, and a stack file's bytes never reach a message. Everything small and in memory."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featcli.cli import app
from featcli.errors import SpecError
from featcli.shape import service
from featcli.shape.service import MAX_LINE, query, serve
from featcli.stages.spec import MAX_NESTING
from featcli.stages.stacks import MAX_FILES, MAX_STAGES, expand

DEEP = "save:a " + "add:a(" * 500 + "relu" + ")" * 500


def answers(data: bytes | str) -> tuple[int, list[dict[str, object]]]:
    stdin = io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    out = io.StringIO()
    failed = serve(stdin, out)
    return failed, [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_deep_branch_is_its_lines_error_and_every_other_line_is_answered() -> None:
    lines = [f"1x3x{8 + i}x8 relu" for i in range(40)]
    lines[17] = f"1x3x8x8 {DEEP}"
    failed, out = answers(("\n".join(lines) + "\n").encode())
    assert failed == 1 and len(out) == 40
    assert out[17] == {"error": out[17]["error"], "line": 18}
    assert f"nest 500 deep; at most {MAX_NESTING}" in str(out[17]["error"])
    assert [o["output"] for o in out[:17]] == [[1, 3, 8 + i, 8] for i in range(17)]


def test_nesting_up_to_the_limit_is_answered_and_the_argv_form_refuses_deeper() -> None:
    ok = "add:a(" * MAX_NESTING + "relu" + ")" * MAX_NESTING
    assert query(service.InputResolver(), "1x3x8x8", ["save:a", ok]).output == (1, 3, 8, 8)
    with pytest.raises(SpecError, match="nest 500 deep"):
        query(service.InputResolver(), "1x3x8x8", DEEP.split(" ", 1))


def test_any_failure_of_one_line_is_that_lines_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """A featcli bug (here: a KeyError from the walk) on one line: an internal error record, and the lines
    read with it are answered."""
    real = service.Answers.answer_texts

    def flaky(self: object, shape: tuple[int, int, int, int], texts: list[str], **kw: object) -> str:
        if shape[2] == 13:
            raise KeyError("boom")
        return real(self, shape, texts, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(service.Answers, "answer_texts", flaky)
    failed, out = answers(b"1x3x12x12 relu\n1x3x13x13 relu\n1x3x14x14 relu\n")
    assert failed == 1
    assert out[0]["output"] == [1, 3, 12, 12] and out[2]["output"] == [1, 3, 14, 14]
    assert str(out[1]["error"]).startswith("internal error: KeyError: 'boom'") and out[1]["line"] == 2


@pytest.mark.parametrize("text_stream", [False, True])
def test_a_line_over_the_cap_is_never_held_whole(text_stream: bool) -> None:
    big = 5_000_000
    data = b"1x3x8x8 relu\n1x3x8x8 conv:k=" + b"9" * big + b"\n2x2 maxpool:k=2\n# fine\n1x3x4x4 relu"
    stdin: io.IOBase = io.StringIO(data.decode()) if text_stream else io.BytesIO(data)
    out = io.StringIO()
    tracemalloc.start()
    try:
        failed = serve(stdin, out)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    got = [json.loads(line) for line in out.getvalue().splitlines()]
    assert failed == 1
    assert got[1] == {"error": f"line 2 is {big + 15:,} bytes long; a query line may have at most {MAX_LINE:,}",
                      "line": 2}
    assert got[0]["output"] == [1, 3, 8, 8] and got[2]["output"] == [1, 1, 1, 1] and got[3]["output"] == [1, 3, 4, 4]
    assert peak < 2_000_000, peak  # the 5 MB line was read past in chunks


def test_a_long_line_at_the_end_and_lines_just_under_the_cap() -> None:
    under = b"1x3x8x8 relu" + b" " * (MAX_LINE - 20) + b"relu"
    failed, out = answers(under + b"\n" + under + b"\n1x3x8x8 " + b"r" * (MAX_LINE + 5))
    assert failed == 1 and out[0]["output"] == out[1]["output"] == [1, 3, 8, 8]
    assert out[2]["line"] == 3 and "bytes long" in str(out[2]["error"])


@pytest.mark.parametrize("token", ["conv:w=" + "r" * 60_000, "r" * 60_000, "@" + "r" * 60_000,
                                   "conv:k=3,p=" + "(" * 60_000])
def test_messages_echo_an_excerpt_of_a_token_never_all_of_it(token: str) -> None:
    failed, out = answers(f"1x3x8x8 {token}\n1x3x8x8 relu\n".encode())
    assert failed == 1 and out[1]["output"] == [1, 3, 8, 8]
    message = str(out[0]["error"])
    assert len(message) < 1500 and "r" * 100 not in message and "(" * 100 not in message, message[:300]
    assert "internal error" not in message


def test_control_characters_in_messages_are_escaped() -> None:
    failed, out = answers(b"1x3x8x8 relu\x1b[31m\n\x1b]0;x\x07 relu\n1x3x8x8 conv:w=a\x00b\n")
    assert failed == 3
    for o in out:
        assert all(ord(c) >= 32 for c in str(o["error"])), o
    assert "relu\\x1b[31m" in str(out[0]["error"])


SECRET = "api_key=SECRET123"


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_text(f"relu\n# a comment\n  conv:k=3 {SECRET}\n", encoding="utf-8")
    return path


def test_a_stack_files_bad_stage_is_named_by_place_not_contents(secret: Path) -> None:
    result = CliRunner().invoke(app, ["shape", "1x3x8x8", f"@{secret}"])
    assert result.exit_code == 2
    assert "SECRET" not in result.output + result.stderr and "api_key" not in result.stderr
    assert f"stack file '{secret}', line 3, column 12 (stage 3 of the file, 17 characters): not a valid stage: " \
           "unknown op <17 characters>" in result.stderr
    failed, out = answers(f"1x3x8x8 @{secret}\n".encode())
    assert failed == 1 and "SECRET" not in str(out[0]["error"]) and "line 3, column 12" in str(out[0]["error"])


@pytest.mark.parametrize("bad, reason", [("conv:k=SECRET", "k=<6 characters>: expected N or HxW"),
                                         ("maxpool:SECRET", "expected key=value, got <6 characters>"),
                                         ("conv:SECRET=1", "unknown key <6 characters> for conv"),
                                         ("add:a(conv:k=SECRET)", "side branch stage <13 characters>"),
                                         ("conv:w=a+,k=SECRET", "w=<2 characters>: empty kernel reference"),
                                         ("convt:p=SECRET", "p=<6 characters>"),
                                         ("conv:w=(SECRET", "unclosed bracket in <9 characters>")])
def test_no_parse_error_of_a_stack_file_echoes_it(tmp_path: Path, bad: str, reason: str) -> None:
    path = tmp_path / "s.txt"
    path.write_text(f"relu {bad}\n", encoding="utf-8")
    with pytest.raises(SpecError) as info:
        query(service.InputResolver(), "1x3x8x8", ["save:a", f"@{path}"])
    message = str(info.value)
    assert "SECRET" not in message and reason in message and "line 1, column 6" in message, message


def test_special_files_and_bad_names_are_one_clean_error(tmp_path: Path) -> None:
    environ = Path("/proc/self/environ")
    if environ.exists():  # st_size 0, yet full of text: read at most MAX_BYTES, never echoed
        with pytest.raises(SpecError, match="not a valid stage|no stages") as info:
            query(service.InputResolver(), "1x3x8x8", [f"@{environ}"])
        assert "PATH=" not in str(info.value)
    with pytest.raises(SpecError, match="too long|not found"):
        expand(["@" + "r" * 5000])
    with pytest.raises(SpecError):
        expand(["@a\x00b"])
    raw = tmp_path / "raw.txt"
    raw.write_bytes(b"relu \xff\xfe SECRET")
    with pytest.raises(SpecError, match=r"not UTF-8 text \(byte 6\)") as info:
        expand([f"@{raw}"])
    assert "SECRET" not in str(info.value)


def test_stack_files_cannot_multiply_without_end(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("relu " * 200, encoding="utf-8")
    (tmp_path / "a.txt").write_text(f"@{tmp_path / 'b.txt'} " * 200, encoding="utf-8")
    with pytest.raises(SpecError, match=f"more than {MAX_STAGES:,} stages"):
        expand([f"@{tmp_path / 'a.txt'}"])
    for i in range(MAX_FILES + 1):
        (tmp_path / f"f{i}.txt").write_text("relu", encoding="utf-8")
    with pytest.raises(SpecError, match=f"more than {MAX_FILES} stack files"):
        expand([f"@{tmp_path / f'f{i}.txt'}" for i in range(MAX_FILES + 1)])
    assert expand([f"@{tmp_path / 'b.txt'}"] * 3) == ["relu"] * 600  # one file named again: read once
