"""featcli's benchmark suite: featcli against the tools people would otherwise use, with the project's targets.

Run from the repository root: ``python -m benchmarks [--quick] [--json|--markdown] [--runs N] [--only NAME,...]``.
Every scenario makes its own deterministic images (benchmarks/images.py, cached in .bench/), runs featcli
and each available peer, and reports the median wall time, the ratio to featcli, peak RSS and, where the
issue sets one, the target with PASS/MISS. Whole-process figures are separate processes timed from the
outside; peak RSS is each process's own ``ru_maxrss`` (with its children) from ``os.wait4``.

``--quick`` shrinks the inputs (a 1 MP photo, 20 batch images, small grid maps) and runs each tool once: a
smoke test of the suite, not a measurement; targets are stated for the full sizes.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import images, peers  # noqa: E402

FEATCLI = [sys.executable, "-m", "featcli"]
SHAPE_ARGS = ["shape", "1x3x640x640", "conv:out=5,k=3x5,s=1x2,p=2", "maxpool:k=2"]
SOBEL = ["conv:w=sobel_x+sobel_y,p=1", "magnitude"]
SCENARIOS = ("shape", "sobel12mp", "grid16", "conv64", "batch200", "tutorial")
HEAVY_MODULES = {"torch", "numpy"}
QUERIES = 20_000
LOOP_FILES = 10


class BenchError(RuntimeError):
    """A benchmarked command failed or produced the wrong output."""


@dataclass
class Proc:
    seconds: float
    rss_mb: float
    stdout: str
    stderr: str


@dataclass
class Row:
    """One tool in one scenario: timed runs, peak RSS, and the issue's target where it has one."""

    scenario: str
    tool: str
    command: str = ""
    runs: list[float] = field(default_factory=list)  #: seconds of each timed run
    rss_mb: float | None = None  #: largest peak RSS over the runs (whole-process rows only)
    items: int = 1  #: images or queries per run, for rates and per-item ratios
    unit: str = ""  #: "img/s" or "q/s" when the rate is the figure that matters
    ratio: float | None = None  #: this tool's seconds per item / featcli's (> 1: featcli is faster)
    target: str = ""
    measured: float | str | None = None
    status: str = ""  #: PASS, MISS, SKIP, ERROR or empty
    notes: str = ""

    @property
    def seconds(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def best(self) -> float | None:
        return min(self.runs) if self.runs else None

    @property
    def rate(self) -> float | None:
        s = self.seconds
        return self.items / s if self.unit and s else None

    def per_item(self) -> float | None:
        s = self.seconds
        return s / self.items if s else None

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds, "best": self.best, "rate": self.rate}


@dataclass
class Context:
    quick: bool
    runs: int
    work: Path
    photo: Path
    photo_size: tuple[int, int]
    batch: Path
    batch_count: int


def _env() -> dict[str, str]:
    # The checkout's featcli, whatever is installed in the venv.
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


# Runs the command from a small fresh Python rather than from this process: on Linux a child's ru_maxrss
# starts from the high-water mark of the process it was forked from (exec keeps it), so forking from the
# suite itself, which holds grids and images, would report the suite's own RSS. Wall time is taken here too.
_LAUNCHER = """
import os, sys, time
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {seconds} {usage.ru_maxrss}")
"""


def run_process(cmd: list[str], cwd: Path, stdin: Path | None = None, ok_codes: tuple[int, ...] = (0,)) -> Proc:
    """Run ``cmd`` to completion: wall seconds, peak RSS in MB (its own, with its waited-for children)."""
    with open(stdin or os.devnull, "rb") as inp, tempfile.TemporaryFile() as out, \
            tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report"
        subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(report), *cmd], stdin=inp, stdout=out,
                       stderr=err, cwd=cwd, env=_env(), check=False)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        code, seconds, maxrss = report.read_text().split() if report.exists() else ("-1", "0", "0")
    if int(code) not in ok_codes:
        raise BenchError(f"exit code {code}: {subprocess.list2cmdline(cmd)[:200]}: {stderr.strip()[-300:]}")
    rss = int(maxrss) / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return Proc(float(seconds), rss, stdout, stderr)


def progress(row: Row) -> Row:
    s = f"{row.seconds:.4g} s" if row.seconds is not None else row.status
    print(f"  {row.scenario:<10} {row.tool:<34} {s}", file=sys.stderr, flush=True)
    return row


def timed_row(ctx: Context, scenario: str, tool: str, cmd: list[str], *, runs: int | None = None,
              stdin: Path | None = None, before: Callable[[], None] | None = None,
              validate: Callable[[Proc], None] | None = None, warmup: bool = True,
              ok_codes: tuple[int, ...] = (0,), **kw: Any) -> tuple[Row, list[Proc]]:
    """Time ``cmd`` as a whole process ``runs`` times (after one untimed warm-up in full mode)."""
    row = Row(scenario, tool, command=subprocess.list2cmdline(cmd), **kw)
    procs: list[Proc] = []
    try:
        for i in range(-1 if warmup and not ctx.quick else 0, runs or ctx.runs):
            if before:
                before()
            p = run_process(cmd, ctx.work, stdin, ok_codes)
            if validate:
                validate(p)
            if i >= 0:
                procs.append(p)
    except BenchError as e:
        row.status, row.notes = "ERROR", str(e)
        return progress(row), []
    row.runs = [round(p.seconds, 4) for p in procs]
    row.rss_mb = round(max(p.rss_mb for p in procs), 1)
    return progress(row), procs


def timed_calls(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(round(time.perf_counter() - t0, 6))
    return times, result


def skipped(scenario: str, peer: peers.Peer) -> Row:
    return progress(Row(scenario, peer.name, status="SKIP", notes=f"not installed: {peer.install}"))


def compare(row: Row, ref: Row) -> float | None:
    """Per-item seconds of ``row`` over ``ref``'s; also stored as ``row.ratio``."""
    a, b = row.per_item(), ref.per_item()
    row.ratio = round(a / b, 3) if a and b else None
    return row.ratio


def check(row: Row, target: str, measured: float | str | None, ok: bool | None) -> None:
    row.target = target
    row.measured = round(measured, 4) if isinstance(measured, float) else measured
    if row.status not in ("ERROR", "SKIP"):
        row.status = "" if ok is None else "PASS" if ok else "MISS"


def shape_queries(n: int) -> tuple[bytes, str]:
    """``n`` query lines for ``featcli shape -``: bench_shape.py's mix when it is there, else a simple one."""
    try:
        from benchmarks import bench_shape

        return bench_shape.make_queries(n), "bench_shape.py's query mix"
    except (ImportError, AttributeError):
        stacks = ["conv:out=5,k=3x5,s=1x2,p=2 maxpool:k=2", "conv:out=64,k=7,s=2,p=3 maxpool:k=3,s=2,p=1",
                  "conv:k=3,p=same relu conv:out=8,k=3,d=2 avgpool:k=2", "conv:w=sobel_x+sobel_y,p=1 magnitude"]
        lines = "".join(f"1x3x{32 + i % 997}x{48 + i % 611} {stacks[i % 4]}\n" for i in range(n))
        return lines.encode(), "4 stacks, varied sizes"


# --- scenarios ------------------------------------------------------------------------------------

def scenario_shape(ctx: Context) -> list[Row]:
    fc, _ = timed_row(ctx, "shape", "featcli shape", [*FEATCLI, *SHAPE_ARGS])
    base, _ = timed_row(ctx, "shape", "python -c pass", [sys.executable, "-c", "pass"])
    compare(base, fc)
    check(fc, "<= 0.12 s", fc.seconds, fc.seconds <= 0.12 if fc.seconds else None)

    queries = ctx.work / "queries.txt"
    data, mix = shape_queries(QUERIES)
    queries.write_bytes(data)

    def all_answered(p: Proc) -> None:
        if p.stdout.count("\n") != QUERIES:
            raise BenchError(f"{p.stdout.count(chr(10))} answers to {QUERIES} queries")

    # Exit code 1 is featcli's answer when some queries are refused (one in 20 of bench_shape's mix).
    stdin, _ = timed_row(ctx, "shape", "featcli shape - (stdin)", [*FEATCLI, "shape", "-"], stdin=queries,
                         validate=all_answered, ok_codes=(0, 1), items=QUERIES, unit="q/s")
    check(stdin, ">= 20000 q/s", stdin.rate, stdin.rate >= 20_000 if stdin.rate else None)
    if stdin.seconds and fc.seconds and stdin.seconds > fc.seconds:
        net = QUERIES / (stdin.seconds - fc.seconds)
        stdin.notes = f"{QUERIES} lines ({mix}), whole process; {net:,.0f} q/s after start-up"

    imports = Row("shape", "imports (-X importtime)", subprocess.list2cmdline(
        [sys.executable, "-X", "importtime", "-m", "featcli", *SHAPE_ARGS]))
    try:
        p = run_process([sys.executable, "-X", "importtime", "-m", "featcli", *SHAPE_ARGS], ctx.work)
        mods = {ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.splitlines() if ln.startswith("import time:")}
        heavy = sorted({m.split(".")[0] for m in mods} & HEAVY_MODULES)
        check(imports, "no torch, no numpy", ", ".join(heavy) or "neither", not heavy)
        imports.runs, imports.rss_mb = [round(p.seconds, 4)], round(p.rss_mb, 1)
        imports.notes = f"{len(mods)} modules imported (time includes -X importtime's own cost)"
    except BenchError as e:
        imports.status, imports.notes = "ERROR", str(e)
    return [fc, base, stdin, progress(imports)]


def scenario_sobel(ctx: Context) -> list[Row]:
    s, src, out = "sobel12mp", str(ctx.photo), ctx.work / "sobel"
    out.mkdir(exist_ok=True)
    fc, _ = timed_row(ctx, s, "featcli", [*FEATCLI, "run", src, *SOBEL, "-o", str(out / "edges.png"), "--force", "-q"],
                      notes="one full-resolution map, palette PNG")
    check(fc, "RSS <= 1024 MB", fc.rss_mb, fc.rss_mb <= 1024 if fc.rss_mb else None)
    rows = [fc]
    vips, magick, cv = peers.find_vips(), peers.find_imagemagick(), peers.find_opencv()
    if vips.argv:
        r, _ = timed_row(ctx, s, "vips sobel", [*vips.argv, "sobel", src, str(out / "vips.png")],
                         notes=f"{vips.version}; per channel, RGB PNG")
        ratio = compare(r, fc)
        ratio = 1 / ratio if ratio else None
        check(r, "featcli/vips <= 1.0", ratio, ratio <= 1.0 if ratio else None)
        rows.append(r)
    else:
        rows.append(skipped(s, vips))
    if magick.argv:
        r, _ = timed_row(ctx, s, "imagemagick convert", [*magick.argv, src, "-morphology", "Convolve", "Sobel",
                                                         str(out / "magick.png")],
                         notes=f"{magick.version.split('https')[0].replace('Version: ', '').strip()}")
        ratio = compare(r, fc)
        check(r, "featcli >= 2x faster", ratio, ratio >= 2.0 if ratio else None)
        rows.append(r)
    else:
        rows.append(skipped(s, magick))
    r, _ = timed_row(ctx, s, "pillow+torch script", [sys.executable, peers.__file__, "torch-sobel", src,
                                                      str(out / "torch.png")],
                     notes="benchmarks/peers.py torch-sobel; PNG level 6")
    compare(r, fc)
    rows.append(r)
    if cv.argv:
        r, _ = timed_row(ctx, s, "opencv script", [*cv.argv, src, str(out / "opencv.png")],
                         notes="benchmarks/peers.py opencv-sobel; whole process")
        compare(r, fc)
        rows.append(r)
    else:
        rows.append(skipped(s, cv))
    return rows


def scenario_grid(ctx: Context) -> list[Row]:
    s = "grid16"
    if importlib.util.find_spec("matplotlib") is None:
        return [skipped(s, peers.Peer("matplotlib", None, "pip install matplotlib"))]
    from benchmarks import bench_render

    h, w = (765, 1020) if ctx.quick else (3060, 4080)
    maps = bench_render.make_maps(h, w)
    out = ctx.work / "grid"
    out.mkdir(exist_ok=True)
    bench_render.featcli_grid(maps[:2], out / "warm.png")  # imports, colormap LUTs, fonts: not timed
    import matplotlib.pyplot  # noqa: F401

    runs, size = timed_calls(lambda: bench_render.featcli_grid(maps, out / "featcli.png"), ctx.runs)
    fc = progress(Row(s, "featcli render_grid", "benchmarks/bench_render.py featcli_grid", runs,
                      notes=f"16 maps {w}x{h} -> {size[0]}x{size[1]} PNG, in-process"))
    runs, mp_size = timed_calls(lambda: bench_render.matplotlib_grid(maps, out / "mpl.png", size), ctx.runs)
    mp = progress(Row(s, "matplotlib subplots", "benchmarks/bench_render.py matplotlib_grid", runs,
                      notes=f"{mp_size[0]}x{mp_size[1]} PNG, in-process (pyplot import not timed)"))
    ratio = compare(mp, fc)
    check(mp, "featcli >= 10x faster", ratio, ratio >= 10 if ratio else None)
    return [fc, mp]


def scenario_conv64(ctx: Context) -> list[Row]:
    s = "conv64"
    cmd = [*FEATCLI, "run", str(ctx.photo), "conv:out=64,k=3,p=1", "-o", str(ctx.work / "grid64.png"), "--force",
           "--json"]
    fc, procs = timed_row(ctx, s, "featcli", cmd, warmup=False, notes="whole process, 64-map grid PNG")
    check(fc, "RSS <= 1536 MB", fc.rss_mb, fc.rss_mb <= 1536 if fc.rss_mb else None)
    conv = Row(s, "featcli conv stage", "--json stages[0].seconds", notes="3->64 3x3 conv alone")
    try:
        conv.runs = [float(json.loads(p.stdout.splitlines()[0])["stages"][0]["seconds"]) for p in procs]
    except (IndexError, KeyError, ValueError) as e:
        conv.status, conv.notes = "ERROR", f"no stage time in the JSON record: {e!r}"
    check(conv, "<= 1.0 s", conv.seconds, conv.seconds <= 1.0 if conv.seconds else None)
    return [fc, progress(conv)]


def scenario_batch(ctx: Context) -> list[Row]:
    s, n, out = "batch200", ctx.batch_count, ctx.work / "batch"
    stages = [*SOBEL, "maxpool:k=2"]

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()

    def wrote(count: int) -> Callable[[Proc], None]:
        def validate(_: Proc) -> None:
            if (got := len(list(out.glob("*.png")))) != count:
                raise BenchError(f"{got} PNGs written, {count} expected")
        return validate

    cmd = [*FEATCLI, "run", str(ctx.batch), *stages, "-o", f"{out}/{{stem}}.png", "--stages", "all", "-q"]
    fc, _ = timed_row(ctx, s, "featcli (one process)", cmd, before=clean, validate=wrote(n), items=n, unit="img/s",
                      notes=f"{n} x 640x640 JPEGs, 3-stage grid each")
    check(fc, ">= 40 img/s", fc.rate, fc.rate >= 40 if fc.rate else None)
    one, _ = timed_row(ctx, s, "featcli --batch-size 1 --workers 1", [*cmd, "--batch-size", "1", "--workers", "1"],
                       before=clean, validate=wrote(n), items=n, unit="img/s")
    compare(one, fc)
    files = [str(f) for f in sorted(ctx.batch.glob("*.jpg"))[:LOOP_FILES]]
    script = ('py="$1"; out="$2"; shift 2; for f in "$@"; do "$py" -m featcli run "$f" ' + " ".join(stages)
              + ' -o "$out/$(basename "$f" .jpg).png" --stages all -q || exit 1; done')
    loop, _ = timed_row(ctx, s, f"shell loop ({len(files)} processes)",
                        ["bash", "-c", script, "bash", sys.executable, str(out), *files],
                        runs=min(ctx.runs, 3), before=clean, validate=wrote(len(files)), warmup=False,
                        items=len(files), unit="img/s", notes="one featcli process per file")
    ratio = compare(loop, fc)
    check(loop, "featcli >= 50x the loop", ratio, ratio >= 50 if ratio else None)
    # The loop paid torch's import in every process; featcli's own single runs now skip it (NumPy
    # engine), which makes the loop above ~4x faster. This row is the loop, for the record.
    torch_script = script.replace(" -q ||", " -q --engine torch ||")
    tloop, _ = timed_row(ctx, s, f"shell loop, torch engine ({len(files)} processes)",
                         ["bash", "-c", torch_script, "bash", sys.executable, str(out), *files],
                         runs=min(ctx.runs, 3), before=clean, validate=wrote(len(files)), warmup=False,
                         items=len(files), unit="img/s", notes="one featcli process per file, importing torch")
    compare(tloop, fc)
    return [fc, one, loop, tloop]


def scenario_tutorial(ctx: Context) -> list[Row]:
    import numpy as np
    import torch
    from PIL import Image

    from featcli.engine.plan import Planner, PlanOptions
    from featcli.engine.torch_backend import TorchBackend
    from featcli.enums import KernelMode
    from featcli.kernels import conv_weight
    from featcli.stages.spec import parse_stage

    s = "tutorial"
    rgb = np.asarray(Image.open(sorted(ctx.batch.glob("*.jpg"))[0]).convert("RGB"))
    crop = np.ascontiguousarray(rgb[288:352, 288:352], dtype=np.float32) / 255  # 64x64x3, across an edge
    cw = conv_weight(["sobel_x", "sobel_y"], 3, KernelMode.SUM)  # (2, 3, 3, 3)
    kernel = cw.weight.permute(2, 3, 1, 0).numpy()  # the tutorials' (kh, kw, C, out)
    x = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0)

    # featcli's own compiled conv stage (the plan's weights, F.conv2d), as a run calls it.
    plan = Planner([parse_stage("conv:w=sobel_x+sobel_y")], PlanOptions()).plan_for(tuple(x.shape))
    stage_fn = TorchBackend("cpu").compile(plan.stages[0])

    def featcli_conv() -> torch.Tensor:
        out: torch.Tensor = stage_fn(x)
        return out

    # One thread: a 64x64 crop gains nothing from more, and on a busy 2-core machine a 2-thread team waits
    # for scheduler ticks (20+ ms a call instead of 30 us). Each run is the mean of REPEAT calls.
    threads, repeat = torch.get_num_threads(), 50
    torch.set_num_threads(1)
    try:
        featcli_conv()  # oneDNN's first-call set-up is not the convolution
        runs, _ = timed_calls(lambda: [featcli_conv() for _ in range(repeat)], max(ctx.runs, 5))
        got = featcli_conv()
    finally:
        torch.set_num_threads(threads)
    fc = progress(Row(s, "featcli conv2d (F.conv2d)", "featcli.engine.torch_backend conv stage",
                      [round(t / repeat, 7) for t in runs],
                      notes=f"64x64 RGB crop, sobel_x+sobel_y, in-process, 1 thread, mean of {repeat} calls a run"))
    runs, want = timed_calls(lambda: peers.tutorial_conv(crop[None], kernel), ctx.runs)
    loop = progress(Row(s, "numpy nested loops", "benchmarks/peers.py tutorial_conv", runs,
                        notes=f"{want.shape[1] * want.shape[2] * want.shape[3]:,} np.sum calls"))
    compare(loop, fc)
    diff = float(np.abs(got.permute(0, 2, 3, 1).numpy() - want).max())
    check(loop, "outputs agree to 1e-4", f"max diff {diff:.1e}", diff <= 1e-4)
    return [fc, loop]


RUNNERS: dict[str, Callable[[Context], list[Row]]] = {
    "shape": scenario_shape, "sobel12mp": scenario_sobel, "grid16": scenario_grid,
    "conv64": scenario_conv64, "batch200": scenario_batch, "tutorial": scenario_tutorial,
}


# --- report ---------------------------------------------------------------------------------------

def _num(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.{digits}g}" if abs(v) < 1 else f"{v:.{digits + 1}g}"


def table(doc: dict[str, Any]) -> str:
    head = ["scenario", "tool", "median s (n)", "min s", "rate", "x featcli", "RSS MB", "target", "measured", "check",
            "notes"]
    body = []
    for rows in doc["scenarios"].values():
        for r in rows:
            med = f"{_num(r['seconds'])} ({len(r['runs'])})" if r["seconds"] is not None else "-"
            rate = f"{_num(r['rate'])} {r['unit']}" if r["rate"] else ""
            m = r["measured"]
            body.append([r["scenario"], r["tool"], med, _num(r["best"]), rate, _num(r["ratio"]) if r["ratio"] else "",
                         _num(r["rss_mb"]) if r["rss_mb"] else "", r["target"],
                         _num(m) if isinstance(m, float | int) else (m or ""), r["status"], r["notes"]])
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head) - 1)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(x, widths, strict=False)) + "  " + x[-1]
             for x in [head, *body]]
    m = doc["machine"]
    intro = [f"featcli benchmarks ({'quick' if doc['quick'] else 'full'}): {doc['images']['photo']}, "
             f"{doc['images']['batch']}; median of {doc['runs']} run(s) unless (n) says otherwise",
             f"{m['cpus']} CPUs, load average {m['load_start']} at start, {m['load_end']} at end; Python "
             f"{m['python']}, torch {m['torch']}; featcli {doc['git']}; {doc['seconds']:.0f} s in all",
             "x featcli = tool's seconds per item / featcli's (> 1: featcli faster); RSS = peak of one process"]
    return "\n".join([*intro, "", *lines])


def markdown(doc: dict[str, Any]) -> str:
    """The rows as a Markdown table (for docs/benchmarks.md)."""
    head = "| scenario | tool | median s (runs) | min s | rate | x featcli | peak RSS MB | target | measured | check |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for rows in doc["scenarios"].values():
        for r in rows:
            med = f"{_num(r['seconds'])} ({len(r['runs'])})" if r["seconds"] is not None else "-"
            m = r["measured"]
            rate = f"{_num(r['rate'])} {r['unit']}" if r["rate"] else ""
            cells = [r["scenario"], r["tool"], med, _num(r["best"]), rate,
                     _num(r["ratio"]) if r["ratio"] else "", _num(r["rss_mb"]) if r["rss_mb"] else "",
                     r["target"].replace("<=", "≤").replace(">=", "≥"),
                     _num(m) if isinstance(m, float | int) else (m or ""), f"**{r['status']}**" if r["status"] else ""]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _git() -> str:
    """HEAD's short hash, with ``+dirty`` when featcli/ has uncommitted changes (they are measured too)."""
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return f"{head}+dirty" if head and git("status", "--porcelain", "--", "featcli") else head or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small inputs, one run each: a smoke test (under a minute)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table instead (docs/benchmarks.md)")
    ap.add_argument("--runs", type=int, help="timed runs per tool (default 5, quick 1); the median is reported")
    ap.add_argument("--only", help=f"comma-separated scenarios to run: {','.join(SCENARIOS)}")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else list(SCENARIOS)
    if bad := [s for s in only if s not in SCENARIOS]:
        ap.error(f"unknown scenario {', '.join(bad)}; known: {', '.join(SCENARIOS)}")
    only = [s for s in SCENARIOS if s in only]
    runs = max(1, args.runs or (1 if args.quick else 5))

    t_start, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S%z")
    load_start = [round(x, 2) for x in os.getloadavg()]
    if args.quick:
        photo, size = images.CACHE / "photo1mp.jpg", (1152, 864)
        if not photo.exists():
            images.CACHE.mkdir(parents=True, exist_ok=True)
            images.photo(*size, seed=12).save(photo, quality=92)
        batch, count = images.jpeg_folder(20, 640), 20
    else:
        photo, size, batch, count = images.photo12mp(), (4080, 3060), images.jpeg_folder(200, 640), 200

    scenarios: dict[str, list[dict[str, Any]]] = {}
    load: dict[str, float] = {}  # 1-minute load average as each scenario starts (others may be running)
    with tempfile.TemporaryDirectory(prefix="featcli-bench-") as tmp:
        ctx = Context(args.quick, runs, Path(tmp), photo, size, batch, count)
        for name in only:
            load[name] = round(os.getloadavg()[0], 2)
            print(f"{name} ... (load {load[name]})", file=sys.stderr, flush=True)
            scenarios[name] = [r.record() for r in RUNNERS[name](ctx)]

    statuses = [r["status"] for rows in scenarios.values() for r in rows]
    doc = {
        "suite": "featcli benchmarks",
        "command": subprocess.list2cmdline(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)]),
        "git": _git(),
        "quick": args.quick,
        "runs": runs,
        "images": {"photo": f"{photo.name} {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.1f} MP)",
                   "batch": f"{count} x 640x640 JPEGs"},
        "machine": {"cpus": os.cpu_count(), "load_start": load_start, "load_by_scenario": load,
                    "load_end": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version(),
                    "torch": importlib.metadata.version("torch"), "platform": platform.platform()},
        "started": started,
        "seconds": round(time.perf_counter() - t_start, 1),
        "summary": {k: statuses.count(k) for k in ("PASS", "MISS", "SKIP", "ERROR")},
        "scenarios": scenarios,
    }
    print(json.dumps(doc, indent=2) if args.json else markdown(doc) if args.markdown else table(doc))
    return 1 if doc["summary"]["ERROR"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
