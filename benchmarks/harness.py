"""The suite's machinery: timed whole processes (a launcher that reads the peak RSS), rows, ratios and targets."""

from __future__ import annotations

import os
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

from benchmarks import peers  # noqa: E402

FEATCLI = [sys.executable, "-m", "featcli"]


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


# CPU seconds of a command's whole process tree. The launcher makes itself the child subreaper (Linux
# prctl), so descendants that outlive their parent (a multiprocessing fork server or resource tracker ends
# after the command's main process) are reparented to it and waited for here; RUSAGE_CHILDREN then holds
# every process of the tree, whoever started it. Elsewhere only the command's waited-for children count.
_TREE_LAUNCHER = """
import ctypes, os, resource, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except (OSError, AttributeError):
    pass
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status = os.waitpid(pid, 0)
signal.alarm(60)  # an orphan that never ends would hang the suite
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
u = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {u.ru_utime + u.ru_stime}")
"""


def tree_cpu_seconds(cmd: list[str], cwd: Path) -> float:
    """User + system CPU seconds of ``cmd`` and every process it started, its orphans included."""
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as err:
        report = Path(tmp) / "report"
        subprocess.run([sys.executable, "-S", "-c", _TREE_LAUNCHER, str(report), *cmd], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=err, cwd=cwd, env=_env(), check=False)
        code, cpu = report.read_text().split() if report.exists() else ("-1", "0")
        if int(code) != 0:
            err.seek(0)
            raise BenchError(f"exit code {code}: {subprocess.list2cmdline(cmd)[:200]}: "
                             f"{err.read().decode(errors='replace').strip()[-300:]}")
    return float(cpu)


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


def interleaved(ctx: Context, scenario: str, tools: list[tuple[str, list[str], dict[str, Any]]], *,
                before: Callable[[], None] | None = None,
                validate: dict[str, Callable[[Proc], None]] | None = None) -> list[Row]:
    """Time several commands round-robin (one run of each in turn, after one untimed warm-up round in full
    mode), so a shared machine's load falls on all of them alike and their ratios hold within one run.
    ``tools``: (tool name, argv, Row fields); ``validate``: per tool name."""
    rows = [Row(scenario, tool, command=subprocess.list2cmdline(cmd), **kw) for tool, cmd, kw in tools]
    procs: list[list[Proc]] = [[] for _ in tools]
    for i in range(-1 if not ctx.quick else 0, ctx.runs):
        for k, (tool, cmd, _) in enumerate(tools):
            if rows[k].status == "ERROR":
                continue
            try:
                if before:
                    before()
                p = run_process(cmd, ctx.work)
                if validate and tool in validate:
                    validate[tool](p)
            except BenchError as e:
                rows[k].status, rows[k].notes = "ERROR", str(e)
                continue
            if i >= 0:
                procs[k].append(p)
    for row, ps in zip(rows, procs, strict=True):
        if ps and row.status != "ERROR":
            row.runs = [round(p.seconds, 4) for p in ps]
            row.rss_mb = round(max(p.rss_mb for p in ps), 1)
        progress(row)
    return rows


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
