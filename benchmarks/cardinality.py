"""Scenario 2, cardinality and memory: R task runs over 50 DAGs x 20 tasks.

Pushgateway: each task run pushes its own group (grouping key {job, dag_id, task_id, run_id}, the only way
to keep runs from overwriting each other there) holding a counter of its end state and a duration gauge;
the Pushgateway adds push_time_seconds and push_failure_time_seconds to each group. Measured: groups held,
its resident memory (/proc), the size and fetch time of its /metrics, and what the benchmark's Prometheus
makes of it.

This pipeline: the same task runs through the plugin's real hooks in SENDERS processes, each reporting its
share of the runs through one ``drive.BatchingPipeline`` (flush every 500 task ends instead of at each;
everything else, hooks, emitters, OTLP transport, is what a task process runs). Measured: Prometheus
series, the Collector's memory, event records and spans the stores hold, and their bytes on disk.
"""

from __future__ import annotations

import functools
import multiprocessing
import time

import prometheus_client
import requests

from testkit import stackutil
from testkit.plugin import plugin_environ
from testkit.procs import run_released
from testkit.wait import poll

from . import drive, peers
from .common import Context, Table, fmt, median, mib, ms, rss_bytes

QUICK_R = (1_000,)
FULL_R = (1_000, 10_000, 100_000)
SENDERS = 2
PUSH_BUDGET_S = {False: 120.0, True: 600.0}  # per R; a Pushgateway slower than this is a result
SEND_BUDGET_S = 900.0
JOB = "airflow_runs"
# counter _total and _created, the gauge, and the Pushgateway's push_time_seconds, push_failure_time_seconds
SERIES_PER_GROUP = 5


def _push_runs(runs: list[drive.Run], pushed: multiprocessing.Array, slot: int, until: float) -> None:
    for n, run in enumerate(runs):
        if time.time() > until:
            return
        registry = prometheus_client.CollectorRegistry()
        prometheus_client.Counter("airflow_task_runs", "Task runs by end state", ["state"],
                                  registry=registry).labels(run.state).inc()
        prometheus_client.Gauge("airflow_task_duration_seconds", "Task duration", registry=registry).set(3.0)
        prometheus_client.push_to_gateway(
            peers.PUSHGATEWAY.removeprefix("http://"), job=JOB, registry=registry, timeout=30,
            grouping_key={"dag_id": run.dag_id, "task_id": run.task_id, "run_id": run.run_id})
        pushed[slot] = n + 1


def _shares(runs: list[drive.Run]) -> list[list[drive.Run]]:
    return [runs[i::SENDERS] for i in range(SENDERS)]


def _pushgateway_row(ctx: Context, bench: peers.Peers, runs: list[drive.Run]) -> list[object]:
    bench.start_pushgateway()  # empty: only this R's groups
    pushed = multiprocessing.get_context("fork").Array("i", SENDERS)
    budget = PUSH_BUDGET_S[ctx.full]
    shares = _shares(runs)
    began = time.monotonic()
    until = time.time() + budget
    run_released(lambda i: functools.partial(_push_runs, shares[i], pushed, i, until), SENDERS, budget + 60)
    took = time.monotonic() - began
    total = sum(pushed)
    body, fetch = b"", []
    for _ in range(3):
        t0 = time.monotonic()
        body = requests.get(f"{peers.PUSHGATEWAY}/metrics", timeout=120).content
        fetch.append(time.monotonic() - t0)
    groups = body.count(b"\npush_time_seconds{")
    rss = rss_bytes(bench.pid("pushgateway"))
    target = 'job="pushgateway"'
    series = poll(lambda: stackutil.prom_value(f'count({{job="{JOB}"}})', url=peers.PROMETHEUS) or 0,
                  lambda v: v >= SERIES_PER_GROUP * total, timeout=60, settle=15)
    scrape = stackutil.prom_value(f"scrape_duration_seconds{{{target}}}", url=peers.PROMETHEUS)
    up = stackutil.prom_value(f"up{{{target}}}", url=peers.PROMETHEUS)
    return [len(runs), f"{total:,} in {took:.0f} s ({total / took:,.0f}/s)", groups, mib(rss),
            mib(len(body)), ms(median(fetch)), f"{ms(scrape)} (up={fmt(up)})", int(series)]


def _pipeline_row(ctx: Context, runs: list[drive.Run], prefix: str) -> list[object]:
    spool = ctx.scratch / f"spool-cardinality-{len(runs)}"
    rss0 = drive.stack_rss()["collector"]
    disk0 = drive.store_disk()
    shares = _shares(runs)
    began = time.monotonic()
    with plugin_environ(spool, budget=15):
        released = run_released(lambda i: functools.partial(drive.send_batched, shares[i]), SENDERS,
                                 SEND_BUDGET_S)
    took = time.monotonic() - began
    n = len(runs)
    counted = poll(lambda: drive.finished_total(prefix), lambda v: v >= n, timeout=120, settle=20)
    series = drive.plugin_series(prefix)
    rss1 = drive.stack_rss()["collector"]
    events = poll(lambda: drive.event_count(prefix), lambda v: v >= 2 * n, timeout=180, settle=20)
    traces = drive.trace_ids(runs)
    spans = poll(lambda: stackutil.span_count(traces), lambda v: v >= n, timeout=300, settle=30, interval=5)
    time.sleep(5)  # let both stores write their in-memory parts to disk
    disk1 = drive.store_disk()
    spool_left = sum(1 for p in spool.glob("*.pb")) if spool.exists() else 0
    return [n, f"{n:,} in {took:.0f} s ({n / took:,.0f}/s)", counted, series, f"{mib(rss0)} → {mib(rss1)}",
            f"{events:,} of {2 * n:,}", mib(disk1["victorialogs"] - disk0["victorialogs"]),
            f"{spans:,} of {n:,}", mib(disk1["jaeger"] - disk0["jaeger"]), spool_left + released.failed]


def run(ctx: Context, bench: peers.Peers) -> list[Table]:
    pgw = Table(
        f"Cardinality, Pushgateway with run_id in the grouping key ({ctx.mode} mode)",
        ["R task runs", "groups pushed", "groups held", "Pushgateway RSS", "/metrics size", "GET /metrics",
         "Prometheus scrape of it", "series in Prometheus"])
    ours = Table(
        f"Cardinality, this pipeline ({ctx.mode} mode)",
        ["R task runs", "sent", "task_instance.finished sum in Prometheus", "Prometheus series",
         "Collector RSS before → after", "events in VictoriaLogs", "VictoriaLogs disk Δ", "spans in Jaeger",
         "Jaeger disk Δ", "spool left + senders failed"])
    for r in FULL_R if ctx.full else QUICK_R:
        prefix = f"{ctx.dag_prefix('card')}_{r}runs"
        runs = list(drive.spread_runs(prefix, r))
        watch = drive.Restarts()
        pgw.rows.append(_pushgateway_row(ctx, bench, runs))
        ours.rows.append(_pipeline_row(ctx, runs, prefix))
        restarted = watch.since()
        if restarted:
            ours.notes.append(f"R={r}: DISTURBED, {', '.join(restarted)} restarted during the measurement "
                              "(someone else's test); its counts may be short for that reason.")
    pgw.notes += [
        "Groups grow by one per task run and are never deleted unless someone calls the delete API; each "
        "group is 4 series (the counter, the gauge, push_time_seconds, push_failure_time_seconds).",
        f"Pushes from {SENDERS} processes in parallel, bounded by {PUSH_BUDGET_S[ctx.full]:.0f} s per R. "
        "The benchmark's Prometheus scrapes the Pushgateway every "
        f"{peers.PUSHGATEWAY_SCRAPE_S} s with a {peers.PUSHGATEWAY_SCRAPE_S} s timeout.",
    ]
    ours.notes += [
        f"{SENDERS} sender processes, each reporting its share of the runs through the real hooks (running, "
        "then success or failed; about 10% fail) with one pipeline that flushes every 500 task ends (a real "
        "task process flushes once, at its end). Per task run: 2 event records (running, end), 1 span, and "
        "metric points (finished counter, duration histogram).",
        "Series are bounded by DAGs x tasks x states (50 x 20 x 2): 1 counter series plus 19 histogram series "
        "(16 buckets, +Inf, _sum, _count) per combination, whatever R is.",
        "Disk Δ: growth of the store's data directory (allocated blocks) during the row, including anything "
        "other tests wrote at the same time; Jaeger's Badger preallocates value-log files, so its Δ moves in "
        "steps.",
    ]
    return [pgw, ours]
