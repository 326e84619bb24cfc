r"""The shape service: one query (``featcli shape INPUT STAGE...``) and the stdin query loop (``featcli shape -``).

The streams are arguments, never ``sys.stdin``/``sys.stdout`` read from a global (httpie's ``Environment``
idea), so the loop runs the same under the CLI, in a test over ``io.BytesIO`` or inside another program. The
CLI parses its options, calls :func:`query` or :func:`serve`, prints, and maps the failure count to the exit
code.

Pure stdlib: no typer, rich, numpy or torch. An image INPUT reads its size from the file header through
:mod:`featcli.io.images` (PIL), imported only when a line names a file.

>>> import io, json
>>> out = io.StringIO()
>>> serve(io.BytesIO(b"1x3x8x8 maxpool:k=2\n# a comment\n2x2 conv:k=3\n"), out)
1
>>> [json.loads(line).get("output", "error") for line in out.getvalue().splitlines()]
[[1, 3, 4, 4], 'error']
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from featcli.errors import FeatcliError, SpecError
from featcli.shape.fast.answers import Answers
from featcli.shape.fast.kept import Kept
from featcli.shape.infer import apply_target, infer
from featcli.shape.inputs import resolve_input
from featcli.stages.grammar import clean_message, looks_like_shape, parse_input_shape, parse_size
from featcli.stages.spec import Stage, parse_stage, split_key_hint
from featcli.stages.stacks import expand

if TYPE_CHECKING:
    from featcli.io.images import LoadOptions
    from featcli.shape.report import ShapeReport

__all__ = ["MAX_LINE", "InputResolver", "line_batches", "query", "serve"]

Shape4 = tuple[int, int, int, int]
_READ_SIZE = 1 << 16
#: The longest query line :func:`serve` reads (bytes; characters on a text stream): a longer one is never
#: held whole, it is skipped to its end and answered with an error naming its number and length.
MAX_LINE = 1 << 16
#: How many distinct answers :func:`serve` keeps for repeated queries (then it starts again).
_ANSWERED_MAX = 4096
#: How many distinct parsed stages :func:`serve` keeps by their text (then it starts again).
_STAGES_MAX = 16384


class InputResolver:
    """Turns INPUT texts into ``((N, C, H, W), source)``: shapes are parsed, anything else is an image file.

    Args:
        load_options: builds the image-loading options; called once, when the first image file is named
            (a session of plain shapes never imports PIL). None: the loader's defaults.
    """

    __slots__ = ("_load_options", "_opts", "_built")

    def __init__(self, load_options: Callable[[], LoadOptions] | None = None) -> None:
        self._load_options = load_options
        self._opts: LoadOptions | None = None
        self._built = False

    def options(self) -> LoadOptions | None:
        """The image-loading options, built on first use."""
        if not self._built:
            self._opts = self._load_options() if self._load_options is not None else None
            self._built = True
        return self._opts

    def __call__(self, text: str) -> tuple[Shape4, str | None]:
        """``NxCxHxW``/``CxHxW``/``HxW`` -> that shape and None; an image path -> its tensor shape and the path.

        Raises:
            SpecError: ``text`` looks like a shape but is not a valid one.
            ImageLoadError: ``text`` names no readable image.
        """
        try:
            return parse_input_shape(text), None
        except SpecError:
            if looks_like_shape(text):
                raise
        return resolve_input(text, self.options())


def query(inputs: InputResolver, input_text: str, stage_texts: Sequence[str], *, solve: str | None = None,
          kernels_dir: str | None = None) -> ShapeReport:
    """One ``featcli shape`` query: INPUT, stage specs and the optional ``--solve HxW`` target -> the report.

    Raises:
        SpecError: a bad INPUT, stage spec or ``--solve`` value (exit code 2).
        ShapeError, KernelError, ImageLoadError: a stack torch would refuse, an unknown kernel, a bad image.
    """
    shape, source = inputs(input_text)
    hint = split_key_hint(stage_texts)
    if hint is not None:
        raise SpecError(hint)
    stages = [parse_stage(t, i) for i, t in enumerate(expand(stage_texts), 1)]
    if solve is not None:
        stages = apply_target(stages, parse_size(solve.removeprefix("out="), key="--solve"))
    return infer(shape, stages, kernels_dir=kernels_dir, source=source)


def line_batches(stdin: IO[Any]) -> Iterator[list[str] | int]:
    """``stdin`` as batches of complete lines: whatever one read returned (up to 64 KiB).

    Answers go out once per batch and are flushed before the next read blocks, so a script that writes one
    query and waits gets its answer at once, and a file of queries costs one write per 64 KiB. ``stdin`` is a
    binary stream, or a text stream over one (``sys.stdin``), or a text stream alone (read line by line).

    A line longer than :data:`MAX_LINE` is never held whole: it is read past in chunks and stands in the
    sequence as an ``int``, its length, in place of a batch.
    """
    read1 = getattr(getattr(stdin, "buffer", stdin), "read1", None)
    if read1 is None:
        yield from _text_lines(stdin)
        return
    pending = b""
    skipped = 0  # > 0: the bytes so far of a line over MAX_LINE, being read past
    while True:
        chunk = read1(_READ_SIZE)
        if not chunk:
            break
        if skipped:
            end = chunk.find(b"\n")
            if end < 0:
                skipped += len(chunk)
                continue
            yield skipped + end
            skipped, chunk = 0, chunk[end + 1:]
        data = pending + chunk
        cut = data.rfind(b"\n") + 1
        pending = data[cut:]
        if cut:
            lines = data[:cut].decode("utf-8", "surrogateescape").splitlines()
            if cut > MAX_LINE and max(map(len, lines)) > MAX_LINE // 4:  # a line may be long: measure its bytes
                yield from _split_long(lines)
            else:
                yield lines
        if len(pending) > MAX_LINE:
            skipped, pending = len(pending), b""
    if skipped:
        yield skipped
    elif pending:
        yield [pending.decode("utf-8", "surrogateescape")]


def _split_long(lines: list[str]) -> Iterator[list[str] | int]:
    """A batch with its lines over :data:`MAX_LINE` bytes given as their lengths (in order)."""
    batch: list[str] = []
    for line in lines:
        size = len(line.encode("utf-8", "surrogateescape")) if len(line) > MAX_LINE // 4 else 0
        if size > MAX_LINE:
            if batch:
                yield batch
            batch = []
            yield size
        else:
            batch.append(line)
    if batch:
        yield batch


def _text_lines(stdin: IO[Any]) -> Iterator[list[str] | int]:
    """:func:`line_batches` of a stream that has no binary buffer: one line at a time, each read bounded."""
    while True:
        line = stdin.readline(MAX_LINE + 1)
        if not line:
            return
        if isinstance(line, bytes):
            line = line.decode("utf-8", "surrogateescape")
        if len(line) > MAX_LINE and not line.endswith("\n"):
            size = len(line)
            while line and not line.endswith("\n"):
                line = stdin.readline(_READ_SIZE)
                size += len(line) - line.endswith("\n")
            yield size
        else:
            yield line.splitlines()


def _internal(exc: Exception) -> str:
    """A failure that is not featcli's own error, as one line: the line is answered, the rest go on."""
    import os

    if os.environ.get("FEATCLI_DEBUG"):
        import sys
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    return f"internal error: {type(exc).__name__}: {exc} (set FEATCLI_DEBUG=1 for a traceback)"


def serve(stdin: IO[Any], stdout: IO[str], inputs: InputResolver | None = None, *,
          kernels_dir: str | None = None) -> int:
    """Answer ``INPUT STAGE...`` lines from ``stdin`` with one JSON line each on ``stdout``, in order.

    Blank lines and ``#`` comments get no answer; a failing line gets ``{"error": message, "line": N}``: a
    refused query, a line over :data:`MAX_LINE` (never read whole), even a featcli bug (an internal error),
    and every other line is answered. Messages are one line, escaped, and echo at most an excerpt of a token.

    Returns:
        The number of failed lines (the CLI exits 1 when it is not 0).
    """
    if inputs is None:
        inputs = InputResolver()
    # The throughput path: names bound locally; input shapes and parsed stages kept by their text (parsing is
    # pure), each answer written as JSON text from the walk (featcli.shape.fast.answers) instead of a report.
    parse_shape, parse = parse_input_shape, parse_stage
    # Raw characters are a quarter faster to encode than \u escapes; used for ASCII lines (featcli's own
    # messages are ASCII), so the output is ASCII whatever the terminal's encoding.
    fast, safe = Answers(), Answers(ensure_ascii=True)
    write, flush = stdout.write, stdout.flush
    stage_of: Kept[str, Stage] = Kept(_STAGES_MAX)
    # Answers of queries already seen, by their text: a script that asks the same question again (a sweep
    # over a few stacks, a loop re-checking a model) gets the same JSON text without the walk. Only answers
    # that depend on the line alone: no image INPUT (its size is read from a file), no @STACK file, no
    # kernel or weights reference (``w=``: a file the user may edit between queries), no error (its message
    # names the line number).
    answered: Kept[str, str] = Kept(_ANSWERED_MAX)
    failed = lineno = 0
    for batch in line_batches(stdin):
        if isinstance(batch, int):  # a line over MAX_LINE, read past
            lineno += 1
            failed += 1
            write(safe.error(f"line {lineno} is {batch:,} bytes long; a query line may have at most "
                             f"{MAX_LINE:,}", lineno) + "\n")
            flush()
            continue
        answers = []
        for line in batch:
            lineno += 1
            tokens = line.split()
            if "#" in line:
                for j, tok in enumerate(tokens):
                    if tok.startswith("#"):
                        del tokens[j:]
                        break
            if not tokens:
                continue
            key = line  # the same line again (the same tokens spaced otherwise are answered again, alike)
            text = answered.get(key)
            if text is not None:
                answers.append(text)
                continue
            out = fast if line.isascii() else safe
            try:
                try:
                    shape, source = parse_shape(tokens[0]), None
                except SpecError:
                    shape, source = inputs(tokens[0])
                texts = tokens[1:]
                branched = "(" in line or "@" in line  # a side branch spans tokens; @STACK names a stack file
                if not branched and source is None:  # the common line: one token a stage, compiled by text
                    text = out.answer_texts(shape, texts, kernels_dir=kernels_dir)
                else:
                    if branched:
                        texts = expand(texts)
                    stages = []
                    for i, t in enumerate(texts, 1):
                        stage = stage_of.get(t)
                        if stage is None:
                            stage = stage_of.keep(t, parse(t, i))
                        stages.append(stage)
                    text = out.answer(shape, stages, source, kernels_dir=kernels_dir)
                answers.append(text)
                if source is None and "@" not in line and "w=" not in line:  # w=: a kernel file may change
                    answered.keep(key, text)
            except FeatcliError as exc:
                failed += 1
                hint = split_key_hint(tokens[1:]) if isinstance(exc, SpecError) else None
                answers.append(out.error(clean_message(hint or str(exc)), lineno))
            except Exception as exc:  # noqa: BLE001 - one line's failure must not lose the other lines' answers
                failed += 1
                answers.append(out.error(clean_message(_internal(exc)), lineno))
        if answers:
            answers.append("")
            write("\n".join(answers))
            flush()
    return failed
