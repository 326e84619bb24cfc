"""The shape service (featcli.shape.service) on in-memory streams: no CLI, no terminal, no globals."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from featcli.errors import ImageLoadError, ShapeError, SpecError
from featcli.shape.service import InputResolver, line_batches, query, serve

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "samples" / "shapes.png")  # 320x240 RGB


def answers(text: bytes | str, inputs: InputResolver | None = None,
            kernels_dir: str | None = None) -> tuple[int, list[dict[str, object]]]:
    stdin = io.BytesIO(text) if isinstance(text, bytes) else io.StringIO(text)
    out = io.StringIO()
    failed = serve(stdin, out, inputs, kernels_dir=kernels_dir)
    return failed, [json.loads(line) for line in out.getvalue().splitlines()]


def test_serve_answers_every_query_line_in_order() -> None:
    failed, out = answers(b"# header\n1x3x64x64 conv:k=3  # trailing comment\n\n"
                          b"2x2 conv:k=3\n1x3x8x8 maxpool:k=2#not-a-comment\n7x7 maxpool:k=2\n")
    assert failed == 2
    assert out[0]["output"] == [1, 3, 62, 62]
    assert out[1] == {"error": "stage 1 'conv:k=3': kernel 3x3 is larger than the input 2x2 (H: 3 > 2; W: 3 > 2); "
                      "pad it (p=1, or p=same) or use a smaller kernel",
                      "line": 4}
    assert out[2]["line"] == 5 and "maxpool:k=2#not-a-comment" in str(out[2]["error"])
    assert out[3]["output"] == [1, 1, 3, 3]


def test_serve_reads_text_streams_and_a_last_line_without_newline() -> None:
    assert answers("1x1x8x8 conv\n8x8")[1][1]["output"] == [1, 1, 8, 8]
    assert answers(b"1x1x8x8 conv\n8x8")[1][1]["output"] == [1, 1, 8, 8]
    assert answers(b"") == (0, [])


def test_serve_escapes_non_ascii_lines() -> None:
    stdin = io.BytesIO("1x3x8x8 conv:w=caf\u00e9\n".encode())
    out = io.StringIO()
    assert serve(stdin, out) == 1
    assert out.getvalue().isascii() and "caf\\u00e9" in out.getvalue()


def test_line_batches_cut_at_newlines_only() -> None:
    class Chunks(io.RawIOBase):
        """A pipe that returns what the writer wrote so far: one chunk per read."""

        def __init__(self, chunks: list[bytes]) -> None:
            self.chunks = chunks

        def read1(self, n: int = -1) -> bytes:
            return self.chunks.pop(0) if self.chunks else b""

    batches = list(line_batches(Chunks([b"1x1x4x4 re", b"lu\n2x2\n3x3", b"\n", b"4x4"])))
    assert batches == [["1x1x4x4 relu", "2x2"], ["3x3"], ["4x4"]]


def test_images_are_resolved_with_options_built_once_and_only_for_files() -> None:
    from featcli.cli.options import load_options
    from featcli.enums import Channels

    built: list[int] = []

    def options():  # type: ignore[no-untyped-def]
        built.append(1)
        return load_options(channels=Channels.GRAY)

    inputs = InputResolver(options)
    failed, out = answers(f"1x3x8x8\n{SAMPLE} maxpool:k=2\n{SAMPLE}\n".encode(), inputs)
    assert failed == 0 and len(built) == 1
    assert out[1]["input"] == [1, 1, 240, 320] and out[1]["source"] == SAMPLE
    assert InputResolver()(SAMPLE) == ((1, 3, 240, 320), SAMPLE)
    assert InputResolver(options)("3x32x32") == ((1, 3, 32, 32), None)
    with pytest.raises(SpecError):
        InputResolver(options)("1x3x4x5x6")
    with pytest.raises(ImageLoadError, match="no such file"):
        InputResolver()(str(ROOT / "missing.png"))


def test_query_with_and_without_a_solve_target() -> None:
    inputs = InputResolver()
    assert query(inputs, "1x3x64x64", ["conv:k=3,s=2,p=?"], solve="33x33").output == (1, 3, 33, 33)
    assert query(inputs, "1x3x64x64", ["conv:k=3,s=2,p=?"], solve="out=33x33").output == (1, 3, 33, 33)
    assert query(inputs, "28x28", []).output == (1, 1, 28, 28)
    with pytest.raises(SpecError, match="exactly one stage"):
        query(inputs, "1x3x8x8", ["conv"], solve="4x4")
    with pytest.raises(SpecError, match="stage 2 'conv:k=0'"):
        query(inputs, "1x3x8x8", ["conv", "conv:k=0"])
    with pytest.raises(ShapeError, match="stage 1"):
        query(inputs, "1x3x5x5", ["conv:k=7"])


def test_stages_and_shape_import_neither_numpy_nor_torch() -> None:
    """The shape path stays instant: featcli/stages and featcli/shape never import numpy or torch."""
    code = (
        "import io, sys, json\n"
        "import featcli.shape.service, featcli.shape.infer, featcli.stages.spec\n"
        "from featcli.shape.service import serve\n"
        "out = io.StringIO()\n"
        "failed = serve(io.BytesIO(b'1x3x64x64 conv:w=sobel_x maxpool:k=2 conv:k=3,p=? flatten linear:out=2\\n'),"
        " out)\n"
        "assert failed == 0, out.getvalue()\n"
        "assert json.loads(out.getvalue())['stages'][0]['out'] == [1, 1, 62, 62], out.getvalue()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'torch', 'typer', 'rich')))\n"
        "assert 'numpy' not in sys.modules and 'torch' not in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


def test_serve_repeated_lines_match_fresh_answers_and_the_query_path() -> None:
    """The answer cache (repeated queries) changes no byte: each line answered alone and by query() agree."""
    import json
    import random

    from featcli.shape import service

    rng = random.Random(7)
    stacks = ["conv:out=5,k=3x5,s=1x2,p=2 maxpool:k=2", "convt:k=4,s=2,p=1 conv:k=3,p=same",
              "avgpool:k=3,s=2,ceil=1 conv:out=8,k=3,s=2,p=?", "conv:k=9 conv:k=9", "adaptiveavg:o=3 flatten",
              "save:a conv:k=3,p=1 add:a(conv:k=1 bn) relu"]
    lines = [f"1x3x{rng.choice([5, 16, 17, 33])}x{rng.choice([6, 16, 31])} {rng.choice(stacks)}" for _ in range(300)]
    lines += ["1x3x8x8 @lenet5", "1x1x32x32 @lenet5", "1x1x32x32 @lenet5  # again"]
    def raw(text: str) -> list[str]:
        out = io.StringIO()
        serve(io.StringIO(text), out)
        return out.getvalue().splitlines()

    out = raw("\n".join(lines) + "\n")
    assert len(out) == len(lines)
    for n, (line, got) in enumerate(zip(lines, out, strict=True), 1):
        alone = raw(line + "\n")[0]
        if alone.startswith('{"error"'):
            assert got == alone.replace('"line":1}', f'"line":{n}}}')
            continue
        assert got == alone
        tokens = line.split("#")[0].split()
        expected = service.query(InputResolver(), tokens[0], tokens[1:]).to_dict()
        assert json.loads(got) == json.loads(json.dumps(expected))


def test_serve_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from featcli.shape import service

    monkeypatch.setattr(service, "_ANSWERED_MAX", 3)
    lines = [f"1x1x{8 + i % 5}x8 maxpool:k=2" for i in range(40)]
    assert [a["output"][2] for a in answers("\n".join(lines))[1]] == [(8 + i % 5) // 2 for i in range(40)]
