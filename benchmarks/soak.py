"""Soak: minutes of task processes at a high task rate against the native stack, with faults injected
(Collector SIGKILL/start twice, VictoriaLogs stop/start, Jaeger stop/start), then what was sent against what arrived
in each store. Not part of pytest (tests/reliability/test_soak.py runs ``--quick``).

    python -m benchmarks.soak [--minutes 5] [--parallel 2] [--tasks-per-process 10] [--quick] [--out PATH]

Every task process is ``testkit/taskproc.py``: the plugin's listener hooks with Airflow-shaped
objects and the real OTLP pipeline, one shared spool (one host). Each process reports one DAG run of
``--tasks-per-process`` tasks (every fifth fails, with a secret-bearing error) and the run's end. After the
last fault one more task process on the host delivers whatever waits in the spool (no user action), then
the stores are counted: events (VictoriaLogs), spans (Jaeger) and finished tries (Prometheus,
``increase()`` over the whole soak, which spans the Collector's restart). Exit status 1 if any count differs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from otel_plugin.core import ids
from testkit import harness as h
from testkit import stackutil as su

SECTION = "## Results"


@dataclass
class Fault:
    service: str
    at: float  # fraction of the soak
    seconds: float
    crash: bool = False  # SIGKILL (compose/stack.sh kill) instead of a clean stop


# The Collector is crashed, not stopped: nothing it answered for may depend on a clean shutdown. The stores
# are stopped cleanly (a SIGKILLed VictoriaLogs loses what it acknowledged in its last flush interval: its
# own limit, docs/reliability.md).
FAULTS = [
    Fault("collector", 0.15, 10, crash=True),
    Fault("victorialogs", 0.4, 30),
    Fault("jaeger", 0.65, 30),
    Fault("collector", 0.85, 2, crash=True),
]
QUICK_FAULTS = [Fault("victorialogs", 0.3, 8)]


@dataclass
class Tally:
    processes: int = 0
    tasks: int = 0
    events: int = 0
    spans: int = 0
    hooks: list[float] = field(default_factory=list)
    exits: list[float] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)


def spec(dag_id: str, run_id: str, tasks: int) -> dict:
    error = "load failed: postgresql://etl:hunter2@db/x"
    return {
        "dag_id": dag_id, "run_id": run_id, "dag_run": "failed",
        "tasks": [{"task_id": f"t{i}", "state": "failed" if i % 5 == 4 else "success", "error": error}
                  for i in range(tasks)],
    }


def inject(faults: list[Fault], duration: float, start: float, log: list[str]) -> None:
    """Runs in a thread: stops and restarts services on schedule (always restarted)."""
    for fault in faults:
        time.sleep(max(0.0, start + fault.at * duration - time.monotonic()))
        with h.outage(fault.service, crash=fault.crash):
            how = "killed (SIGKILL)" if fault.crash else "stopped"
            log.append(f"{time.monotonic() - start:6.1f} s: {fault.service} {how} for {fault.seconds:.0f} s")
            time.sleep(fault.seconds)
        log.append(f"{time.monotonic() - start:6.1f} s: {fault.service} back")


def drive(dag_id: str, spool: Path, duration: float, parallel: int, tasks: int) -> Tally:
    tally = Tally()
    env = h.plugin_env(spool)
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        specs = []
        for _ in range(parallel):
            run_id = f"soak__{uuid.uuid4().hex[:12]}"
            tally.run_ids.append(run_id)
            specs.append(spec(dag_id, run_id, tasks))
        for done in h.run_tasks(specs, env, parallel=parallel):
            tally.hooks.append(done.hooks)
            tally.exits.append(done.exit_delay)
        tally.processes += parallel
        tally.tasks += parallel * tasks
        tally.events += parallel * (2 * tasks + 1)
        tally.spans += parallel * (tasks + 1)
    return tally


def arrived(dag_id: str, tally: Tally, since: float) -> tuple[int, int, float]:
    events = su.event_count(f'dag_id:"{dag_id}"')
    spans = su.span_count(ids.trace_id(dag_id, run_id, 0) for run_id in tally.run_ids)
    series = f'{h.FINISHED}{{dag_id="{dag_id}"}}'
    last = su.prom_value(f"max(timestamp({series}))")
    if last is None:
        return events, spans, 0.0
    # At the last sample: increase() neither extrapolates past it nor, from the 0 a new series starts
    # with, before the first one; resets (the Collector's restart) are added back.
    window = f"{int(last - since) + 60}s"
    finished = su.prom_value(f"sum(increase({series}[{window}]))", at=last) or 0.0
    return events, spans, finished


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--parallel", type=int, default=2, help="task processes at a time")
    parser.add_argument("--tasks-per-process", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="30 s, one short VictoriaLogs outage")
    parser.add_argument("--out", type=Path, help="write the result section into this Markdown file")
    args = parser.parse_args(argv)
    duration = 30.0 if args.quick else args.minutes * 60
    faults = QUICK_FAULTS if args.quick else FAULTS

    su.ensure_stack()
    dag_id = f"soak_{uuid.uuid4().hex[:10]}"
    spool = Path(tempfile.mkdtemp(prefix="soak-spool-"))
    log: list[str] = []
    started_wall, started = time.time(), time.monotonic()
    injector = threading.Thread(target=inject, args=(faults, duration, started, log))
    injector.start()
    tally = drive(dag_id, spool, duration, args.parallel, args.tasks_per_process)
    injector.join()
    spooled_at_end = h.spool_files(spool)
    # The next task on the host delivers the backlog, no user action (it reports one more run).
    final = drive(dag_id, spool, 0.1, 1, args.tasks_per_process)
    for name in ("processes", "tasks", "events", "spans", "hooks", "exits", "run_ids"):
        setattr(tally, name, getattr(tally, name) + getattr(final, name))
    elapsed = time.monotonic() - started

    want = (tally.events, tally.spans, float(tally.tasks))
    try:
        got = su.wait_until(lambda: arrived(dag_id, tally, started_wall), ok=lambda g: g == want, timeout=180,
                            interval=5, what="every store to hold what was sent")
        time.sleep(15)  # and nothing more arrives afterwards (no duplicates)
        got = arrived(dag_id, tally, started_wall)
    except AssertionError:
        got = arrived(dag_id, tally, started_wall)
    ok = got == want and h.spool_files(spool) == {}

    lines = [
        f"{'quick' if args.quick else 'full'} soak, {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started_wall))} UTC,"
        f" `python -m benchmarks.soak {' '.join(argv if argv is not None else sys.argv[1:])}`",
        "",
        f"- {tally.processes} task processes, {tally.tasks} task tries in {elapsed:.0f} s "
        f"({tally.tasks / elapsed:.1f} tries/s), {args.parallel} processes at a time, flush budget 2 s",
        *(f"- fault: {entry}" for entry in log),
        f"- spool after the last fault: {spooled_at_end or 'empty'}; after the next task: "
        f"{h.spool_files(spool) or 'empty'}",
        f"- time the final hooks held a task: p50 {percentile(tally.hooks, 50):.2f} s, "
        f"p99 {percentile(tally.hooks, 99):.2f} s, max {max(tally.hooks):.2f} s; "
        f"whole exit: p50 {percentile(tally.exits, 50):.2f} s, max {max(tally.exits):.2f} s",
        "",
        "| store | sent | arrived |",
        "|---|---|---|",
        f"| VictoriaLogs events | {want[0]} | {got[0]} |",
        f"| Jaeger spans | {want[1]} | {got[1]} |",
        f"| Prometheus finished tries (increase over the soak) | {want[2]:.0f} | {got[2]:g} |",
        "",
        f"Result: {'every store exact' if ok else 'MISMATCH'}.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        write_section(args.out, report)
    return 0 if ok else 1


def write_section(path: Path, report: str) -> None:
    """Replace the results section of the Markdown file (everything after its heading) with this run."""
    text = path.read_text() if path.exists() else f"# Soak\n\n{SECTION}\n"
    head = text.split(SECTION, 1)[0]
    path.write_text(f"{head}{SECTION}\n\n{report}\n")


if __name__ == "__main__":
    sys.exit(main())
