"""Fault injection and counting for the reliability tests and benchmarks/soak.py.

- ``TaskProcesses``: real task processes (``taskproc``) with the plugin's own pipeline and spool, timed;
- ``BlackHole``: a local TCP port that accepts connections and never answers (a hung Collector);
- ``outage``: stop or kill one service of the native stack and ALWAYS start it again (other people use it);
- ``arrived``/``wait_exactly``: what each store holds for a run (counters of testkit.stackutil).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otel_plugin.core import contract, ids
from testkit import stackutil as su
from testkit.net import free_port  # noqa: F401 - the reliability tests reach it as h.free_port
from testkit.plugin import plugin_env

FINISHED = contract.TASK_FINISHED.prometheus


@dataclass
class Finished:
    hooks: float  # seconds the final hooks (success/failed, before_stopping) held the task
    exit_delay: float  # seconds from the task's end to the process's exit (hooks, atexit, teardown)
    returncode: int
    stderr: str


def start_task(spec: Mapping[str, Any], env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "testkit.taskproc", json.dumps(spec)],
        env=dict(env), cwd=su.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish_task(proc: subprocess.Popen[str], timeout: float = 120) -> Finished:
    out, err = proc.communicate(timeout=timeout)
    exited = time.monotonic()
    marks = {k: v for line in out.splitlines() if line.startswith("{") for k, v in json.loads(line).items()}
    assert "hooks_done" in marks, f"task process did not finish its hooks (exit {proc.returncode}):\n{err[-3000:]}"
    return Finished(marks["hooks_done"] - marks["task_end"], exited - marks["task_end"], proc.returncode, err)


def run_tasks(specs: Sequence[Mapping[str, Any]], env: Mapping[str, str], parallel: int = 4) -> list[Finished]:
    """Run one process per spec, at most ``parallel`` at a time; all must exit 0."""
    done: list[Finished] = []
    with ThreadPoolExecutor(parallel) as pool:  # one waiter per process, so each exit is timed when it happens
        for i in range(0, len(specs), parallel):
            procs = [start_task(spec, env) for spec in specs[i : i + parallel]]
            done += pool.map(finish_task, procs)
    failed = [f for f in done if f.returncode]
    assert not failed, f"{len(failed)} task processes failed:\n{failed[0].stderr[-3000:]}"
    return done


def bare_exit_delay(spool_dir: Path) -> float:
    """Exit delay of one task process with the plugin disabled, timed now: interpreter and Airflow teardown,
    which a loaded machine stretches from about 0.7 s to seconds. Bounds on the plugin's exit are relative to
    it, so they hold whatever else the machine does."""
    env = plugin_env(spool_dir, AIRFLOW__OTEL_PLUGIN__ENABLED="false")
    (bare,) = run_tasks(task_specs("bare_exit", "bare", ["a"]), env)
    return bare.exit_delay


def task_specs(dag_id: str, run_id: str, tasks: Sequence[str], dag_run: str | None = None,
               task_seconds: float = 0.0) -> list[dict[str, Any]]:
    """One process per task (each succeeds), plus one reporting the DAG run's end when ``dag_run`` is set."""
    specs: list[dict[str, Any]] = [
        {"dag_id": dag_id, "run_id": run_id, "tasks": [{"task_id": t, "state": "success"}],
         "task_seconds": task_seconds}
        for t in tasks
    ]
    if dag_run:
        specs.append({"dag_id": dag_id, "run_id": run_id, "tasks": [], "dag_run": dag_run})
    return specs


class BlackHole:
    """Accepts TCP connections and never reads or answers them, like a hung Collector or a dropped route."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self._held.append(self._sock.accept()[0])

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def outage(service: str, crash: bool = False) -> Iterator[None]:
    """Stop (or, with ``crash``, SIGKILL) a service of the shared native stack for the duration of the block;
    it is always restarted."""
    su.stack("kill" if crash else "stop", service)
    try:
        yield
    finally:
        su.stack("start", service)


# --- what the spool holds ----------------------------------------------------------------------------


def spool_files(spool_dir: Path) -> dict[str, int]:
    """Signal -> number of payload files waiting (ready or in flight)."""
    counts: dict[str, int] = {}
    if spool_dir.is_dir():
        for path in spool_dir.iterdir():
            if not path.name.startswith("."):
                signal = path.name.split(".")[1]
                counts[signal] = counts.get(signal, 0) + 1
    return counts


def spooled_records(spool_dir: Path) -> dict[str, int]:
    """Log records and spans inside the spooled payloads (decoded)."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    counts = {"logs": 0, "traces": 0}
    for path in spool_dir.iterdir() if spool_dir.is_dir() else ():
        if ".logs." in path.name:
            req = ExportLogsServiceRequest.FromString(path.read_bytes())
            counts["logs"] += sum(len(s.log_records) for r in req.resource_logs for s in r.scope_logs)
        elif ".traces." in path.name:
            req = ExportTraceServiceRequest.FromString(path.read_bytes())
            counts["traces"] += sum(len(s.spans) for r in req.resource_spans for s in r.scope_spans)
    return counts


# --- what arrived in each store ----------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    events: int
    spans: int
    finished: float


def expected_for(tasks: int, dag_runs: int = 1) -> Expected:
    """Per run: a running and a final event per task plus the run's end event; a span per task plus
    the root span; one finished count per task."""
    return Expected(events=2 * tasks + dag_runs, spans=tasks + dag_runs, finished=float(tasks))


def arrived(dag_id: str, run_id: str, counts: bool = True) -> Expected:
    """What the stores hold for one run; with ``counts=False`` the Prometheus count is left at 0."""
    finished = float(su.finished_total(dag_id)) if counts else 0.0
    return Expected(su.event_count(f'run_id:"{run_id}"'), su.span_count([ids.trace_id(dag_id, run_id, 0)]), finished)


def wait_exactly(dag_id: str, run_id: str, want: Expected, timeout: float = 90, settle: float = 10,
                 counts: bool = True) -> Expected:
    """Wait until every store holds what was sent, then keep watching ``settle`` seconds for duplicates."""
    if not counts:
        want = Expected(want.events, want.spans, 0.0)
    su.wait_until(lambda: arrived(dag_id, run_id, counts), ok=lambda got: got == want, timeout=timeout,
                  interval=1.0, what=f"{want} for {run_id}")
    time.sleep(settle)
    return arrived(dag_id, run_id, counts)
