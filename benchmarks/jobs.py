"""Scenario 5, jobs: the Pushgateway's own use case, K batch jobs pushing the same application metric.

Concurrency: K forked processes wait at one barrier and are released together; each is a job (a Spark
driver, a container, a script) of one mapped task that counted 5 rows in a prometheus_client registry
(``Counter("bench_job_rows")``) and reports it the way its architecture does:

- Pushgateway: ``push_to_gateway`` under the grouping key {dag_id, task_id} (the same for every job, as
  teams keep it to bound the number of groups), job "loader";
- this pipeline: ``otel_plugin.job.push_to_collector`` of the same registry, the run context (dag_id,
  task_id, run_id, map_index) from the environment a task's ``api.job_env()`` hands its job.

Then it reads what Prometheus ends up with: the sum over the series of the DAG (the benchmark's Prometheus
for the Pushgateway, the stack's for ours). Exit delay: a fresh Python process per trial
(``benchmarks.jobexit``) with the Collector (or the Pushgateway) up, refusing connections, or accepting and
never answering; from the end of the job's work until the process is gone.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable

import prometheus_client

from otel_plugin.core.runcontext import RunContext
from testkit import stackutil
from testkit.plugin import plugin_environ
from testkit.procs import Released, run_released
from testkit.wait import poll

from . import drive, overhead, peers
from .common import Context, Table, fmt

FULL_K = (10, 100, 1000)
QUICK_K = (10, 100)
QUICK_TRIALS, FULL_TRIALS = 3, 10
TASK = "load"
ROWS = 5  # each job's count
TIMEOUT_S = 180.0
NOT_DELIVERED = 4  # exit code of a job whose push_to_collector returned False (spooled)
METRIC = "bench_job_rows"


def _registry() -> prometheus_client.CollectorRegistry:
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter(METRIC, "Rows the job processed", registry=registry).inc(ROWS)
    return registry


def _push_to_gateway(dag: str) -> Callable[[], object]:
    return functools.partial(prometheus_client.push_to_gateway, peers.PUSHGATEWAY.removeprefix("http://"),
                             job="loader", grouping_key={"dag_id": dag, "task_id": TASK}, registry=_registry())


def _job_context(dag: str, index: int) -> dict[str, str]:
    """What ``api.job_env()`` puts in a job's environment for map index ``index`` of one run."""
    return RunContext(dag, TASK, "manual__bench_jobs", 1, index).to_env()


def _push_to_collector(dag: str, index: int) -> Callable[[], object]:
    """In the forked child: the job's environment and job side set up, then (after the release) the push."""
    os.environ.update(_job_context(dag, index))
    from otel_plugin.job import push_to_collector, runtime

    runtime.get()
    registry = _registry()

    def push() -> None:
        if not push_to_collector(registry, job="loader", grouping_key={"dag_id": dag, "task_id": TASK}):
            raise SystemExit(NOT_DELIVERED)

    return push


def _measure(ctx: Context, k: int, dag: str) -> tuple[list[object], str]:
    pgw = run_released(lambda i: _push_to_gateway(dag), k, TIMEOUT_S)
    pushed = int(_pushgateway_value(dag))
    expr = f'sum({METRIC}_total{{dag_id="{dag}"}})'
    with plugin_environ(ctx.scratch / "spool-jobs"):
        ours = run_released(lambda i: _push_to_collector(dag, i), k, TIMEOUT_S)
        counted = int(poll(lambda: stackutil.prom_value(expr) or 0,
                           lambda v: v >= k * ROWS, 90, settle=15))
        # What a job could not deliver within its budget waits in the spool; `replay` (or the next process
        # on the host) sends it.
        subprocess.run([sys.executable, "-m", "otel_plugin", "replay", "--timeout", "60"], check=False,
                       capture_output=True, timeout=120)
        redelivered = int(poll(lambda: stackutil.prom_value(expr) or 0,
                               lambda v: v >= k * ROWS, 60, settle=10))
    spooled = sum(1 for code in ours.exit_codes if code == NOT_DELIVERED)
    failed = pgw.failed + ours.failed - spooled
    row = [k, k * ROWS, pushed, counted, redelivered, spooled, _spreads(pgw, ours), failed]
    return row, (f"K={k}: Pushgateway kept {pushed} of {k * ROWS} rows ({pushed / (k * ROWS):.0%}); "
                 f"push_to_collector {redelivered} of {k * ROWS} ({redelivered / (k * ROWS):.0%}; {counted} at "
                 f"the jobs' exit, {spooled} pushes spooled and redelivered by `replay`).")


def _pushgateway_value(dag: str) -> float:
    """The benchmark Prometheus's value once it has scraped the Pushgateway after the pushes."""
    sent = time.time()
    poll(lambda: stackutil.prom_value('timestamp(up{job="pushgateway"})', url=peers.PROMETHEUS) or 0,
         lambda t: t > sent, timeout=3 * peers.PUSHGATEWAY_SCRAPE_S + 10, interval=0.5)
    return stackutil.prom_value(f'sum({METRIC}_total{{dag_id="{dag}"}})', url=peers.PROMETHEUS) or 0


def _spreads(*batches: Released) -> str:
    return " / ".join(f"{b.spread_ms:.0f}" for b in batches)


def _exit_table(ctx: Context) -> Table:
    trials = FULL_TRIALS if ctx.full else QUICK_TRIALS
    table = Table(f"Jobs: exit delay of a batch job reporting its registry, {trials} processes per cell "
                  f"({ctx.mode} mode)",
                  ["Collector / Pushgateway", "no report", "push_to_collector (flush budget 2 s)",
                   "push_to_gateway (timeout 30 s)", "added by push_to_collector / by push_to_gateway (medians)",
                   "push_to_gateway raised"])
    with peers.black_hole() as hole:
        closed = peers.closed_port()
        conditions = {
            "up": (drive.stackutil.COLLECTOR_OTLP_HTTP, peers.PUSHGATEWAY.removeprefix("http://")),
            "refusing (closed port)": (f"http://127.0.0.1:{closed}", f"127.0.0.1:{closed}"),
            "accepting, never answering": (f"http://127.0.0.1:{hole}", f"127.0.0.1:{hole}"),
        }
        for name, (collector, gateway) in conditions.items():
            job_env = {**_job_context("bench_jobexit", 0), "BENCH_PUSHGATEWAY": gateway}
            with plugin_environ(ctx.scratch / "spool-jobexit", endpoint=collector, **job_env):
                raised: list[int] = []
                none, ours, pgw = (overhead.exit_delays(kind, trials, "benchmarks.jobexit",
                                                        raised if kind == "gateway" else None)
                                   for kind in ("none", "collector", "gateway"))
            table.rows.append([name, overhead.summary(none), overhead.summary(ours), overhead.summary(pgw),
                               f"{overhead.added(ours, none)} / {overhead.added(pgw, none)}",
                               f"{len(raised)} of {trials}"])
    table.notes += [
        "Delay = from the moment the job's work ends (printed by the job process) until the process is gone: "
        "the report, then atexit handlers (push_to_collector's job side ends its job span and writes its "
        "event there, flushing within the same budget). Median (and max) over the trials, one after the "
        "other. No Airflow module is loaded (a job is not an Airflow process).",
        "push_to_gateway raised: the job exits with an exception (its own exit code) unless it catches the "
        "push's error itself; push_to_collector never raises, and keeps what it could not send in the spool.",
    ]
    return table


def run(ctx: Context, bench: peers.Peers) -> list[Table]:
    table = Table(
        f"Jobs: K batch jobs push the same application metric (+{ROWS} rows each) at once ({ctx.mode} mode)",
        ["K", "rows counted by the jobs", "Pushgateway (push_to_gateway) → Prometheus",
         "push_to_collector → Prometheus at the jobs' exit", "push_to_collector after spool redelivery",
         "push_to_collector pushes spooled (not taken within the budget)",
         "release spread (ms) pgw / ours", "children failed"],
    )
    for k in FULL_K if ctx.full else QUICK_K:
        bench.start_pushgateway()  # empty: only this row's pushes
        row, sentence = _measure(ctx, k, f"{ctx.dag_prefix('jobs')}_{k}jobs")
        table.rows.append(row)
        table.notes.append(sentence)
    table.notes += [
        "Each job is a fork of the benchmark; before the barrier it has its registry (and, for ours, its job "
        "side, with the run context in its environment as api.job_env() hands it); after the release it only "
        "pushes. Both push the same grouping key {dag_id, task_id}; ours sends the counter as a delta that the "
        "Collector adds up, the Pushgateway replaces the group's value with each push.",
        f"Delta points the Collector's delta_to_cumulative dropped since its start (whole stack): "
        f"{fmt(drive.out_of_order_drops())}.",
    ]
    return [table, _exit_table(ctx)]
