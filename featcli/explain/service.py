"""``featcli explain STAGE --input ...``: one stage's sliding window, as text and as an animation.

The core of the command without an image: parse the stage and ``--input``, place the windows
(:mod:`featcli.explain.geometry`), walk them over the numbers (:mod:`featcli.explain.numbers`), draw and
encode the frames. Returns the lines to print; the CLI prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

from featcli.errors import UsageError
from featcli.explain import animate
from featcli.explain.geometry import Sweep, sweep
from featcli.explain.numbers import InputSpec, Matrix, matrix_text, output_matrix, parse_input, walk
from featcli.stages.grammar import format_shape, shorten
from featcli.stages.params import ConvSpec, ConvTSpec
from featcli.stages.spec import Stage, parse_stage

#: The longest step of an animation (ms): a minute. GIF and APNG store a frame's time in 16 bits of
#: centiseconds or milliseconds; 10**12 was an internal error in the encoder.
MAX_DELAY_MS = 60_000


@dataclass(frozen=True)
class Written:
    """What an explanation wrote: the file, its frame count and its byte size."""

    path: str
    frames: int
    size: int


def kernel_of(stage: Stage, kernels_dir: str | None = None) -> Matrix | None:
    """The one 2-D kernel of a ``conv:w=...`` stage (None without ``w=``).

    Raises:
        UsageError: several kernels, or a learned 4-D layer (explain draws one kernel on one plane).
    """
    sp = stage.params
    if not isinstance(sp, ConvSpec) or not sp.weights:
        return None
    from featcli.kernels import stage_kernels

    got = stage_kernels(sp.weights, kernels_dir)
    if not isinstance(got, list) or len(got) != 1:
        raise UsageError("explain draws one 2-D kernel: give one w= kernel (a learned layer or several "
                         "kernels make several output channels; use --at on an image for those)")
    return got[0].weights


def channels(sw: Sweep) -> tuple[int, int, int]:
    """``(in, out, groups)`` of a conv or convt, drawn as a channel diagram; ``(1, 1, 1)`` hides it."""
    cfg = sw.row.config
    if isinstance(sw.stage.params, (ConvSpec, ConvTSpec)) and (cfg["in"], cfg["out"], cfg["g"]) != (1, 1, 1):
        return cfg["in"], cfg["out"], cfg["g"]
    return 1, 1, 1


def explain_stage(spec: str, input_text: str, output: str | None, *, force: bool = False,
                  delay: int | None = None, kernels_dir: str | None = None) -> tuple[list[str], Written | None]:
    """Explain one stage on ``--input`` (a size or a matrix): the lines to print and the file written.

    Raises:
        SpecError, UsageError: a bad stage, input or output name (exit 2).
        ShapeError: torch would refuse the stage on this input (exit 1).
    """
    if delay is not None and not 50 <= delay <= MAX_DELAY_MS:
        raise UsageError(f"--delay {shorten(str(delay))}: expected milliseconds from 50 to {MAX_DELAY_MS}")
    fmt = animate.check_name(output) if output else ""
    stage = parse_stage(spec)
    inp: InputSpec = parse_input(input_text)
    if inp.values is not None and inp.shape[1] != 1:
        raise UsageError("--input: a matrix is one channel")
    sw = sweep(stage, inp.shape)
    weights = kernel_of(sw.stage, kernels_dir)
    steps = walk(sw, inp.values, weights, inp.integers) if inp.values is not None else []
    out: list[str] = [f"{spec}  input {format_shape(inp.shape)} -> output {format_shape(sw.row.out_shape)}"]
    out += [f"  {f}" for f in sw.row.formulas if not (f.startswith("C:") and channels(sw) == (1, 1, 1))]
    out += [f"  note: {n}" for n in sw.row.notes]
    for st in steps:
        out.append(f"  ({st.out[0]}, {st.out[1]}): {st.text}")
    if steps:
        pool_avg = getattr(sw.stage.params, "kind", "") == "avg"
        out.append(f"output: {matrix_text(output_matrix(sw, steps), inp.integers and not pool_avg)}")
    written = None
    if output:
        from featcli.explain.frames import Movie, frames

        title = f"{spec}  on  {inp.shape[2]}x{inp.shape[3]}"
        movie = Movie(sw, inp.values, tuple(steps), weights, inp.integers, title, channels(sw))
        pics, times = frames(movie, delay)
        data = animate.encode(pics, times, fmt, f"featcli explain {spec} --input {input_text}")
        path = animate.write(output, data, force=force)
        written = Written(str(path), len(pics), len(data))
        out.append(f"wrote {path} ({len(pics)} frames, {_kb(len(data))})")
    return out, written


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} KB" if n < 1024 * 1024 else f"{n / 2**20:.1f} MB"
