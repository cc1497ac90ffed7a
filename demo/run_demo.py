"""The demo behind ``make demo``: real Airflow runs the demo DAGs, then a report is read back from the stores.

Starts Airflow 3 (api-server, scheduler, dag-processor, LocalExecutor, SQLite) with the plugin under
``.stack/airflow``, triggers the six DAGs of ``demo/dags``, prints one line per task state change until
they finish, then reads everything back: per-DAG counts from Prometheus, each run's timeline from
VictoriaLogs and trace from Jaeger (through ``otel_plugin.readback.lookup``), the Spark job's own metrics
(through the job side), the "succeeded with 0 rows" findings, and every query used, in each dialect.
Airflow is stopped at the end; the stack keeps running.

Usage (the stack must be up: ``make stack-up``)::

    python -m demo.run_demo            # AIRFLOW_DEMO_PORT picks the api-server port (default 28081)
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from otel_plugin.readback import lookup, queries
from otel_plugin.readback.stores import Jaeger, Prometheus, StoreError, VictoriaLogs
from testkit import alerting
from testkit.airflow_local import AirflowLocal
from testkit.net import free_port
from testkit.wait import poll

ROOT = Path(__file__).resolve().parents[1]

DAGS = ("demo_etl", "demo_zero_rows", "demo_flaky", "demo_mapped", "demo_failure_and_skip", "demo_spark")
# demo_spark's job (a PySpark driver, demo/dags/demo_spark.py): its event and spans beyond the tries', and
# the counters it sends through the job side.
JOB_EXTRAS = {"demo_spark": (1, 3)}  # (events: the job's; spans: the job's and its 2 stages')
JOB_METRICS = ("rows_processed_total", "orders_rejected_total")
HOME = ROOT / ".stack" / "airflow"
RUN_TIMEOUT = 600.0  # seconds for all six runs (about a minute here; Spark's JVM is the slowest)
LANDING_TIMEOUT = 60.0  # seconds for the telemetry of finished runs to be queryable
POLL = 2.0
HEARTBEAT = 10.0  # seconds without a state change before a "still waiting" line
FINISHED = ("success", "failed")
T0 = time.monotonic()


def say(text: str = "") -> None:
    print(text, flush=True)


def step(text: str) -> None:
    say(f"[{time.monotonic() - T0:5.1f}s] {text}")


def heading(text: str) -> None:
    say(f"\n{'=' * 4} {text} {'=' * max(4, 110 - len(text))}")


def check_stores() -> None:
    """Fail early, in one line, when the stack is not up."""
    Prometheus().query("1")
    VictoriaLogs().query("_time:1m | limit 1")
    Jaeger().search(queries.jaeger_search(queries.get("dag_traces"), dag_id=DAGS[0], limit=1))


# --- waiting, with progress -----------------------------------------------------------------------


def _ti_key(ti: dict) -> str:
    index = ti.get("map_index", -1)
    return ti["task_id"] + (f"[{index}]" if index is not None and index >= 0 else "")


def wait_for_runs(af: AirflowLocal, runs: dict[str, str]) -> dict[str, str]:
    """Poll every run until all finish; one line per task-instance or run state change. Final run states."""
    seen: dict[tuple[str, str], tuple] = {}
    states: dict[str, str] = {}
    last_line = time.monotonic()
    deadline = time.monotonic() + RUN_TIMEOUT
    while len(states) < len(runs):
        if time.monotonic() > deadline:
            raise SystemExit(f"run_demo: runs not finished after {RUN_TIMEOUT:.0f} s; logs in {af.home / 'logs'}")
        for dag_id, run_id in runs.items():
            if dag_id in states:
                continue
            for ti in af.task_instances(dag_id, run_id):
                now = (ti["state"], ti["try_number"])
                key = (dag_id, _ti_key(ti))
                if ti["state"] and seen.get(key) != now:
                    seen[key] = now
                    step(f"{dag_id:<22} {_ti_key(ti):<20} try {ti['try_number']}  {ti['state']}")
                    last_line = time.monotonic()
            state = af.run_state(dag_id, run_id)
            if state in FINISHED:
                states[dag_id] = state
                step(f"{dag_id:<22} run {state}  ({len(states)} of {len(runs)} runs finished)")
                last_line = time.monotonic()
        if time.monotonic() - last_line >= HEARTBEAT:
            step(f"still waiting: {len(states)} of {len(runs)} runs finished")
            last_line = time.monotonic()
        time.sleep(POLL)
    return states


def wait_until(what: str, probe: Callable[[], bool]) -> None:
    """Wait for the stores; a shortfall is reported, not fatal (the report then shows what arrived)."""
    if not poll(probe, timeout=LANDING_TIMEOUT, interval=POLL, default=False):
        step(f"WARNING: {what} not complete after {LANDING_TIMEOUT:.0f} s; the report shows what arrived")


def landed(found: lookup.RunLookup, tries: int) -> bool:
    terminal = [e for e in found.events if e.state != "running"]
    spans = [s for spans in found.traces.values() for s in spans or []]
    events, job_spans = JOB_EXTRAS.get(found.dag_id, (0, 0))
    # + the DAG run's own event and span
    return len(terminal) == tries + 1 + events and len(spans) == tries + 1 + job_spans


def last_scrape(prom: Prometheus) -> float:
    """When Prometheus last scraped the Collector (unix seconds): the edges of an exact increase() window."""
    return float(prom.query('timestamp(up{job="otelcol"})')[0]["value"][1])


def exact_window(prom: Prometheus, since: float) -> tuple[str, float]:
    """A PromQL range from the scrape at ``since`` to the latest scrape, and that scrape's time.

    Evaluated at that time, increase() over it does not extrapolate (by at most 1 ms at the start).
    """
    at = last_scrape(prom)
    return f"{math.ceil((at - since) * 1000) + 1}ms", at  # + 1 ms: a range excludes its start


def runs_counted(prom: Prometheus, since: float) -> bool:
    """Each demo DAG's run is in Prometheus (the scheduler exports it after the run's tasks)."""
    window, at = exact_window(prom, since)
    promql = queries.render(queries.get("dag_run_counts"), "promql", window=window, dag_id=DAGS)
    return {r["metric"]["dag_id"] for r in prom.query(promql, at=at) if float(r["value"][1]) >= 0.5} == set(DAGS)


# --- the report ---------------------------------------------------------------------------------------


def report_counts(prom: Prometheus, window: str, at: float) -> list[str]:
    heading(f"Per-DAG counts from Prometheus (increase() over the demo's {window} window)")
    used = []
    rows: list[tuple[str, str, str, float]] = []
    for name, task in (("dag_run_counts", "(dag run)"), ("task_counts", None)):
        promql = queries.render(queries.get(name), "promql", window=window, dag_id=DAGS)
        used.append(name)
        for r in prom.query(promql, at=at):
            labels = r["metric"]
            rows.append((labels["dag_id"], task or labels["task_id"], labels["state"], float(r["value"][1])))
    rows = [r for r in rows if round(r[3])]
    rows.sort(key=lambda r: (DAGS.index(r[0]), r[1] != "(dag run)", r[1], r[2]))
    say(f"{'DAG':<24}{'TASK':<22}{'STATE':<17}COUNT")
    for dag_id, task, state, value in rows:
        say(f"{dag_id:<24}{task:<22}{state:<17}{round(value)}")
    say("(The window runs from the last scrape before the runs to the first that saw them all, and is evaluated")
    say(" there, so increase() extrapolates by at most a millisecond: values are rounded to whole counts.)")
    return used


def job_metrics(prom: Prometheus, window: str, at: float) -> dict[str, float]:
    """What the Spark job of demo_spark counted during the demo, per metric (increase over the window)."""
    found = {}
    for name in JOB_METRICS:
        result = prom.query(f'sum(increase({name}{{dag_id="demo_spark"}}[{window}]))', at=at)
        found[name] = round(float(result[0]["value"][1])) if result else 0
    return found


def report_job_metrics(prom: Prometheus, window: str, at: float) -> None:
    heading("A job's own metrics: the PySpark driver of demo_spark, through the job side (otel_plugin.job)")
    for name, value in job_metrics(prom, window, at).items():
        say(f"{name:<26}{{dag_id=\"demo_spark\", task_id=\"count_orders\"}}  +{value} during the demo")
    say("The job's event (fact.rows_read, metric.* totals) and spans (job count_orders, its stages) are in")
    say("demo_spark's timeline and trace below.")


def report_runs(found: dict[str, lookup.RunLookup], states: dict[str, str]) -> None:
    for dag_id, run in found.items():
        heading(f"{dag_id}: run {run.run_id} ({states[dag_id]})")
        say(f"Timeline: {len(run.events)} events from {run.logs_source}")
        say(lookup.format_timeline(run.events))
        for trace_id, spans in run.traces.items():
            say(f"\nTrace {trace_id}: {len(spans or [])} spans from {run.traces_source}")
            say(lookup.format_tree(spans) if spans else "  (not found in the trace store)")


def report_zero_rows(prom: Prometheus, logs: VictoriaLogs, runs: dict[str, str], window: str, at: float) -> list[str]:
    heading("Succeeded with 0 rows (the green tick that hides an empty load)")
    logsql = queries.render(queries.get("zero_rows_events"), "logsql", dag_id=DAGS, run_id=tuple(runs.values()))
    records = logs.query(logsql)
    say(f"Log query (VictoriaLogs): {len(records)} task tries")
    for r in records:
        say(
            f"  {r['dag_id']:<22} {r['task_id']:<20} try {r['try_number']}  "
            f"rows_read={r.get('rows_read')} rows_written={r.get('rows_written')}  run {r['run_id']}"
        )
    promql = queries.render(queries.get("zero_rows_tasks"), "promql", window=window, dag_id=DAGS)
    result = prom.query(promql, at=at)
    say(f"Metric (Prometheus, over the demo's {window}): {len(result)} tasks")
    for r in result:
        say(f"  {r['metric']['dag_id']:<22} {r['metric']['task_id']:<20} {round(float(r['value'][1]))}")
    return ["zero_rows_events", "zero_rows_tasks"]


def report_queries(names: list[str], runs: dict[str, str], window: str) -> None:
    example = "demo_mapped"
    heading("Queries used, in every dialect (paste into Grafana, Prometheus, VictoriaLogs, Jaeger, Loki, Tempo)")
    say(f"Run-scoped queries are shown for {example}; the other runs differ only in dag_id and run_id.")
    for name in names:
        query = queries.get(name)
        values: dict[str, queries.FilterValue] = {"dag_id": DAGS}
        if "run_id" in query.required:
            values = {"dag_id": example, "run_id": runs[example]}
        elif "run_id" in query.filters:
            values["run_id"] = tuple(runs.values())
        say(f"\n{name}: {query.description}")
        span = window if query.signal == "metrics" else "1h"  # logs and traces: the run ids pick the data
        for dialect, text in queries.render_all(query, window=span, **values).items():
            say(f"  {dialect:<8} {text}")


def demo_alerts() -> list[dict]:
    """Alertmanager's active alerts about the demo DAGs."""
    return [a for a in alerting.alertmanager_alerts() if a["labels"].get("dag_id") in DAGS]


def report_alerts() -> None:
    heading("Alerts that fired (Prometheus rules -> Alertmanager; routed by severity, grouped by dag_id)")
    # demo_zero_rows is the one alert the demo must raise; wait for it, then show everything about the demo.
    wait_until("the 0-rows alert in Alertmanager",
               lambda: any(a["labels"]["alertname"] == "AirflowTaskZeroRows" for a in demo_alerts()))
    for a in sorted(demo_alerts(), key=lambda a: (a["labels"]["dag_id"], a["labels"]["alertname"])):
        receivers = ",".join(r["name"] for r in a.get("receivers", []))
        say(f"  {a['labels']['alertname']:<24} {a['labels']['severity']:<8} -> {receivers:<8} "
            f"{a['annotations'].get('summary', '')}")
    say("Delivery: alertmanager/alertmanager.yml (webhooks per severity; replace with your pager or chat).")


GRAFANA_NOTE = """\
Grafana is not run on this machine (AGPL; no Docker engine here). With Docker,
  docker compose -f compose/docker-compose.yml up -d --build
runs the same stack plus Grafana at http://127.0.0.1:3000, provisioned with the dashboards in
grafana/dashboards/local, whose panels are the catalogue queries above (Loki and Tempo: grafana-stack)."""


def main() -> int:
    port = free_port(int(os.environ.get("AIRFLOW_DEMO_PORT", "28081")))
    prom, logs = Prometheus(), VictoriaLogs()
    check_stores()
    step(f"Stack is up (Prometheus {prom.url}, VictoriaLogs {logs.url}, Jaeger {Jaeger().url})")
    af = AirflowLocal(
        HOME,
        ROOT / "demo" / "dags",
        port=port,
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        },
    )
    with af:
        step(
            f"Starting Airflow (api-server, scheduler, dag-processor; LocalExecutor) at http://127.0.0.1:{port}, "
            f"home {HOME.relative_to(ROOT)}, logs {(HOME / 'logs').relative_to(ROOT)}"
        )
        af.start("api-server", "scheduler", "dag-processor", timeout=420)  # a loaded machine starts it slowly
        for dag_id in DAGS:
            af.wait_for_dag(dag_id)
        step("Airflow is up and has parsed the six demo DAGs")
        first_scrape = last_scrape(prom)
        runs = {dag_id: af.trigger(dag_id) for dag_id in DAGS}
        step("Triggered: " + ", ".join(f"{d} ({r})" for d, r in runs.items()))
        states = wait_for_runs(af, runs)

        step("All runs finished; waiting for their telemetry to be queryable in the stores")
        tries = {dag_id: af.ended_tries(dag_id, run_id) for dag_id, run_id in runs.items()}
        found: dict[str, lookup.RunLookup] = {}

        def all_landed() -> bool:
            for dag_id, run_id in runs.items():
                try:
                    found[dag_id] = lookup.lookup(dag_id, run_id)
                except lookup.RunNotFound:
                    return False
            return all(landed(found[d], tries[d]) for d in runs)

        wait_until("events and traces", all_landed)
        wait_until("Prometheus counters", lambda: runs_counted(prom, first_scrape))
        wait_until("the Spark job's counters",
                   lambda: all(job_metrics(prom, *exact_window(prom, first_scrape)).values()))
        window, at = exact_window(prom, first_scrape)
        step("Reading the report back from the stores")
        used = report_counts(prom, window, at)
        report_job_metrics(prom, window, at)
        report_runs(found, states)
        used += report_zero_rows(prom, logs, runs, window, at)
        report_queries(list(dict.fromkeys([*used, *lookup.PASTE_QUERIES])), runs, window)
        report_alerts()
        heading("Grafana")
        say(GRAFANA_NOTE)
        step("Stopping Airflow")
    say(f"\nDone in {time.monotonic() - T0:.0f} s. Airflow is stopped (home and logs: {HOME.relative_to(ROOT)}).")
    say("The stack keeps running: `make stack-down` stops it. Look a run up again with")
    run = runs["demo_flaky"]
    say(f"  python -m otel_plugin lookup --dag demo_flaky --run '{run}'")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except StoreError as err:
        sys.exit(f"run_demo: {err} (is the stack up? `make stack-up`)")
