"""Shared pieces of the benchmarks: the run context, tables, /proc readings and the forked-process barrier."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import platform
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
NONE = "n/a"


@dataclasses.dataclass
class Context:
    """What every scenario gets: the mode, a scratch directory, and a stamp that keeps this run's DAG ids
    apart from everything else in the shared stores (other engineers' tests write there too)."""

    full: bool
    scratch: Path
    stamp: str

    @property
    def mode(self) -> str:
        return "full" if self.full else "quick"

    def dag_prefix(self, scenario: str) -> str:
        return f"bench{self.stamp}_{scenario}"


@dataclasses.dataclass
class Table:
    """One result table: printed as it is produced and written to RESULTS.md."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[object]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"#### {self.title}", "", "| " + " | ".join(self.columns) + " |",
                 "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def fmt(value: object) -> str:
    if value is None:
        return NONE
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def mib(nbytes: float | None) -> str:
    return NONE if nbytes is None else f"{nbytes / 2**20:,.1f} MiB"


def ms(seconds: float | None) -> str:
    return NONE if seconds is None else f"{seconds * 1000:,.2f} ms"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); p99 of 200 samples is the 198th value."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


# --- /proc -----------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used (/proc/<pid>/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def disk_bytes(directory: Path) -> int:
    """Bytes a directory tree occupies on disk (allocated blocks, so sparse preallocated files count as used)."""
    total = 0
    for path in directory.rglob("*"):
        try:
            total += path.lstat().st_blocks * 512
        except FileNotFoundError:  # a store compacts while we walk
            continue
    return total


def load_average() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal:"))
    return {
        "nproc": str(os.cpu_count()),
        "memory": f"{mem / 2**20:.1f} GiB",
        "CPU": cpu,
        "kernel": platform.release(),
        "Python": platform.python_version(),
    }


# --- many processes released at once ---------------------------------------------------------------


def in_child(fn: Callable[[], Any], timeout: float) -> Any:
    """Run ``fn`` in a forked child and return its (picklable) result: OTel pipelines and their threads
    stay out of the benchmark process, which must stay fit to fork."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)

    def child() -> None:
        send.send(fn())

    proc = ctx.Process(target=child, daemon=True)
    proc.start()
    try:
        if not receive.poll(timeout):
            raise TimeoutError(f"child gave no result within {timeout} s (exit code {proc.exitcode})")
        return receive.recv()
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
