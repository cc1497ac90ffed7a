"""Scenario 1, concurrency: K processes report a failure of the same task at the same moment.

K forked processes wait at one barrier and are released together; each reports one failed try of one
mapped task (same DAG, task and run; its own map index) in the way its architecture does it:

- Pushgateway: prometheus-client ``push_to_gateway`` of its own counter (= 1) under the grouping key
  {job, dag_id, task_id}, no run_id (as teams do, to keep the number of groups bounded);
- StatsD: ``statsd.StatsClient.incr`` of Airflow's StatsD name ``airflow.ti.finish.<dag>.<task>.failed``
  over UDP to the statsd_exporter (mapped to labels);
- this pipeline: the plugin's real hooks and OTLP pipeline to the stack's Collector.

Then it reads what Prometheus ends up with (the benchmark's Prometheus for the first two, the stack's for
ours). A plugin payload a process could not deliver within its flush budget is in the spool; the row also
shows the value after one more task process has run (its flush redelivers the spool).
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable
from pathlib import Path

import prometheus_client
import statsd

from testkit import stackutil
from testkit.plugin import plugin_environ
from testkit.procs import Released, run_released
from testkit.wait import poll

from . import drive, peers
from .common import Context, Table, fmt

FULL_K = (10, 100, 1000)
QUICK_K = (10, 100)
TASK = "fan_out"
RUN_ID = "manual__bench"
TIMEOUT_S = 180.0
ATTEMPTS = 2  # a row disturbed by a stack restart is measured once more


def _push(dag_id: str) -> Callable[[], object]:
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("airflow_task_failures", "Failed task tries", registry=registry).inc()
    return functools.partial(prometheus_client.push_to_gateway, peers.PUSHGATEWAY.removeprefix("http://"),
                             job="airflow", grouping_key={"dag_id": dag_id, "task_id": TASK},
                             registry=registry, timeout=30)


def _incr(dag_id: str) -> Callable[[], object]:
    client = statsd.StatsClient("127.0.0.1", peers.STATSD_PORT, prefix="airflow")
    return functools.partial(client.incr, f"ti.finish.{dag_id}.{TASK}.failed")


def _fail(run: drive.Run) -> Callable[[], object]:
    return functools.partial(drive.end, run, drive.begin(run))


def _udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on a UDP socket (last column of /proc/net/udp) because its buffer was full."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[-1])
    return 0


def _after_next_scrape(job: str, expr: str) -> int:
    """The value of ``expr`` in the benchmark's Prometheus once it has scraped ``job`` after this moment."""
    sent = time.time()
    poll(lambda: stackutil.prom_value(f'timestamp(up{{job="{job}"}})', url=peers.PROMETHEUS) or 0,
         lambda t: t > sent, timeout=3 * peers.PUSHGATEWAY_SCRAPE_S + 10, interval=0.5)
    return int(stackutil.prom_value(expr, url=peers.PROMETHEUS) or 0)


def _measure(ctx: Context, k: int, dag: str) -> tuple[list[object], str]:
    """One row: the same K failures through the three architectures; (row, ratio sentence)."""
    runs = [drive.Run(dag, TASK, RUN_ID, drive.FAILED, map_index=i) for i in range(k)]
    pgw = run_released(lambda i: _push(dag), k, TIMEOUT_S)
    drops_before = _udp_drops(peers.STATSD_PORT)
    sd = run_released(lambda i: _incr(dag), k, TIMEOUT_S)
    udp_dropped = _udp_drops(peers.STATSD_PORT) - drops_before
    with plugin_environ(ctx.scratch / "spool-concurrency"):
        ours = run_released(lambda i: _fail(runs[i]), k, TIMEOUT_S)
        pushed = _after_next_scrape("pushgateway", f'sum(airflow_task_failures_total{{dag_id="{dag}"}})')
        counted = _after_next_scrape("statsd", f'sum({{__name__=~"airflow_ti_finish(_total)?",dag_id="{dag}"}})')
        exact = int(poll(lambda: drive.finished_total(dag, drive.FAILED), lambda v: v >= k, 90, settle=15))
        # The next task process on the host: its flush redelivers whatever the K left in the spool.
        next_task = drive.Run(f"{dag}_next", TASK, RUN_ID, "success")
        run_released(lambda i: functools.partial(drive.report, next_task), 1, TIMEOUT_S)
        redelivered = int(poll(lambda: drive.finished_total(dag, drive.FAILED), lambda v: v >= k, 60, settle=10))
    events = int(poll(lambda: drive.event_count(dag, "state:failed"), lambda v: v >= k, 60, settle=10))
    spans = int(poll(lambda: stackutil.span_count(drive.trace_ids(runs[:1])), lambda v: v >= k, 60, settle=10))
    row = [k, pushed, counted, exact, redelivered, events, spans, _spreads(pgw, sd, ours),
           pgw.failed + sd.failed + ours.failed]
    return row, (
        f"K={k}: Pushgateway kept {pushed} of {k} failures ({pushed / k:.0%}); StatsD exporter "
        f"{counted} of {k} ({counted / k:.0%}; {udp_dropped} datagrams dropped by the kernel); this "
        f"pipeline {exact} of {k} at task exit ({exact / k:.0%}), {redelivered} of {k} after redelivery.")


def run(ctx: Context, bench: peers.Peers) -> list[Table]:
    table = Table(
        f"Concurrency: K processes report one failed try of the same task at once ({ctx.mode} mode)",
        ["K", "Pushgateway → Prometheus", "StatsD exporter → Prometheus", "this pipeline → Prometheus",
         "this pipeline after spool redelivery", "failure events in VictoriaLogs", "task spans in Jaeger",
         "release spread (ms) pgw / statsd / ours", "children failed"],
    )
    for k in FULL_K if ctx.full else QUICK_K:
        for attempt in range(1, ATTEMPTS + 1):
            watch = drive.Restarts()
            row, sentence = _measure(ctx, k, f"{ctx.dag_prefix('conc')}_{k}procs_a{attempt}")
            restarted = watch.since()
            if not restarted:
                break
            sentence += f" DISTURBED: {', '.join(restarted)} restarted during the measurement (someone else's test)."
            if attempt < ATTEMPTS:
                table.notes.append(f"K={k} attempt {attempt} discarded: {', '.join(restarted)} restarted during it.")
        table.rows.append(row)
        table.notes.append(sentence)
    table.notes += [
        "Each process is a fork of the benchmark (modules imported). Before the barrier it starts its task "
        "(plugin: on_starting and the running hook; Pushgateway: its registry; StatsD: its client); after the "
        "release it only reports the failure. The spread is between the first and the last process's release "
        "(on 2 busy cores, waking K processes takes that long). Every process ends after its report (the "
        "failure hook flushes synchronously, as in an Airflow task); each batch is bounded by 180 s.",
        f"StatsD: the default UDP receive buffer here is {statsd_socket_buffer():,} bytes.",
        f"Delta points the Collector's delta_to_cumulative dropped since its start (ErrOutOfOrder etc., whole "
        f"stack): {fmt(drive.out_of_order_drops())}.",
    ]
    return [table]


def _spreads(*batches: Released) -> str:
    return " / ".join(f"{b.spread_ms:.0f}" for b in batches)


def statsd_socket_buffer() -> int:
    """The default receive buffer of a UDP socket here (what the statsd_exporter gets without tuning)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
