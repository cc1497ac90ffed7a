"""Shared pieces of the benchmarks: the run context, tables, /proc readings and the forked-process barrier."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import platform
import statistics
import time
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


@dataclasses.dataclass
class Released:
    """What a barrier run measured: when each child was released and how each ended."""

    release_times: list[float]
    exit_codes: list[int | None]

    @property
    def spread_ms(self) -> float:
        times = [t for t in self.release_times if t > 0]
        return (max(times) - min(times)) * 1000 if times else float("nan")

    @property
    def failed(self) -> int:
        return sum(1 for code in self.exit_codes if code != 0)


def run_released(setup: Callable[[int], Callable[[], object]], count: int, timeout: float) -> Released:
    """Fork ``count`` children; child i runs ``setup(i)`` (a task's life up to its last moment), waits at
    one barrier with all the others, then runs what setup returned (the report under test).

    Fork (not spawn): children inherit the imported modules, so 1,000 of them start in seconds and share
    memory pages; the parent must hold no threads or live OTel pipelines when it calls this. Every child
    stamps the moment it was released, so the spread shows how close together the sends really were.
    Children still alive at the deadline are killed and count as failed.
    """
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Value("i", 0)
    go = ctx.Event()
    stamps = ctx.Array("d", count)

    def child(index: int) -> None:
        action = setup(index)
        with ready.get_lock():
            ready.value += 1
        if not go.wait(timeout):
            os._exit(3)
        stamps[index] = time.time()
        action()

    procs = [ctx.Process(target=child, args=(i,), daemon=True) for i in range(count)]
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.start()
        while ready.value < count:
            if time.monotonic() > deadline or any(p.exitcode is not None for p in procs):
                raise RuntimeError(f"only {ready.value} of {count} children reached the barrier")
            time.sleep(0.01)
        go.set()
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()
    return Released(list(stamps), [proc.exitcode for proc in procs])


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
