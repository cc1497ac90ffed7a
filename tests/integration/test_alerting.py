"""Alerts on the shipped stack: Prometheus loads the generated rules and sends to Alertmanager, which delivers
by severity to a webhook (a receiver in this test) and sends the resolution.

The gauges are sent the way the scheduler's schedule report sends them (otel_plugin/airflow/schedule.py's
Reporter on an OTLP MeterProvider), so this is the path from a set gauge to a page, minus Airflow
(tests/airflow/test_alerts_real_runs.py runs the same against real Airflow).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from grafana.generator import alerts
from otel_plugin.airflow import schedule
from otel_plugin.core import contract
from testkit import alerting
from testkit.stackutil import COLLECTOR_OTLP_HTTP, PROMETHEUS, Gate, prom_query, run_processes, wait_until
from testkit.stackutil import stack as stack_sh


@pytest.fixture(scope="module")
def webhook(stack) -> Iterator[alerting.WebhookReceiver]:
    receiver = alerting.WebhookReceiver()
    yield receiver
    receiver.close()


def _provider() -> tuple[MeterProvider, PeriodicExportingMetricReader]:
    exporter = OTLPMetricExporter(endpoint=f"{COLLECTOR_OTLP_HTTP}/v1/metrics", timeout=5)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create({"service.name": contract.SERVICE_NAME})
    return MeterProvider(metric_readers=[reader], resource=resource), reader


def test_prometheus_loads_every_generated_rule(stack):
    groups = requests.get(f"{PROMETHEUS}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"] for group in groups if group["name"] == alerts.GROUP for rule in group["rules"]}
    assert loaded == {a.name for a in alerts.ALERTS}
    assert all(rule["health"] != "err" for group in groups for rule in group["rules"]), groups


def test_prometheus_sends_to_the_stacks_alertmanager(stack):
    active = wait_until(
        lambda: requests.get(f"{PROMETHEUS}/api/v1/alertmanagers", timeout=10).json()["data"]["activeAlertmanagers"],
        timeout=30, what="an active Alertmanager")
    assert [am["url"] for am in active] == [f"{alerting.ALERTMANAGER}/api/v2/alerts"]
    status = requests.get(f"{alerting.ALERTMANAGER}/api/v2/status", timeout=10).json()
    assert status["cluster"]["status"] == "disabled"  # --cluster.listen-address= : no gossip port


def test_an_import_error_gauge_pages_critical_and_its_fix_sends_the_resolution(webhook):
    filename = f"/dags/broken_{uuid.uuid4().hex[:8]}.py"
    provider, reader = _provider()
    reporter = schedule.Reporter(provider.get_meter("otel_plugin"))
    sent = time.time()
    reporter.report(schedule.Snapshot([], {filename}))
    reader.force_flush()
    path, alert, at = webhook.wait_for(alerting.firing("AirflowDagImportError", filename=filename), timeout=120,
                                       what=f"the import error of {filename}")  # fmt: skip
    assert path == "/critical"  # routed by severity
    assert alert["annotations"]["summary"].startswith(filename)
    print(f"import error -> webhook: {at - sent:.1f} s")

    fixed = time.time()
    reporter.report(schedule.Snapshot([], set()))  # the file parses again: 0
    reader.force_flush()
    _, _, at = webhook.wait_for(alerting.resolved("AirflowDagImportError", filename=filename), timeout=180,
                                what=f"the resolution of {filename}")  # fmt: skip
    print(f"fix -> resolved at the webhook: {at - fixed:.1f} s")
    provider.shutdown()


def test_a_past_success_deadline_pages_with_the_dag_id_and_a_past_run_deadline_warns(webhook):
    dag_id = f"alert_test_{uuid.uuid4().hex[:8]}"
    provider, reader = _provider()
    meter = provider.get_meter("otel_plugin")
    reporter = schedule.Reporter(meter)
    long_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=30)
    # Due 30 minutes ago (usual 10 s): late. A run started 30 minutes ago (3 x 10 s allowed, at least 60 s): stuck.
    dag = schedule.DagState(dag_id, next_after_success=long_ago, oldest_running_start=long_ago, durations=(10.0,))
    reporter.report(schedule.Snapshot([dag], set()))
    reader.force_flush()
    path, alert, _ = webhook.wait_for(alerting.firing("AirflowDagLate", dag_id=dag_id), timeout=150,
                                      what=f"AirflowDagLate for {dag_id}")  # fmt: skip
    assert path == "/critical" and alert["labels"]["severity"] == "critical"
    path, _, _ = webhook.wait_for(alerting.firing("AirflowDagRunStuck", dag_id=dag_id), timeout=60,
                                  what=f"AirflowDagRunStuck for {dag_id}")  # fmt: skip
    assert path == "/warning"
    # Grouped by dag_id: no notification mixes this DAG's alerts with another DAG's.
    for _, payload, _ in webhook.received:
        ids = {a["labels"].get("dag_id") for a in payload["alerts"]}
        assert len(ids) == 1, payload
    reporter.report(schedule.Snapshot([], set()))  # the DAG is gone: 0, the alerts resolve
    reader.force_flush()
    provider.shutdown()


def _report_in_process(gate: Gate, dag_id: str, deadline_ago: float) -> None:
    """One process, as one scheduler: its own MeterProvider (own service.instance.id) sends one report."""
    provider, reader = _provider()
    gate.wait()
    due = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=deadline_ago)
    # With the allowance for a 10 s usual duration (30 s minimum), the deadline is due + 30 s.
    schedule.Reporter(provider.get_meter("otel_plugin")).report(
        schedule.Snapshot([schedule.DagState(dag_id, next_after_success=due, durations=(10.0,))], set()))
    reader.force_flush()
    provider.shutdown()


def test_deadline_gauges_from_many_processes_are_one_series_and_survive_a_collector_restart(stack):
    """Three "schedulers" report the same deadline: one series, one value. The Collector then restarts with
    no scheduler left to report again: the alert keeps firing (the rule reads last_over_time)."""
    dag_id = f"restart_{uuid.uuid4().hex[:8]}"
    run_processes(_report_in_process, [(dag_id, 600.0)] * 3)
    selector = f'{contract.DAG_SUCCESS_DEADLINE.prometheus}{{dag_id="{dag_id}"}}'
    series = wait_until(lambda: prom_query(selector), timeout=60, what=selector)
    assert len(series) == 1, series  # three processes, one series: process identity is stripped
    late = lambda: [a for a in alerting.prometheus_alerts("AirflowDagLate")  # noqa: E731
                    if a["labels"]["dag_id"] == dag_id and a["state"] == "firing"]  # fmt: skip
    wait_until(late, timeout=60, what=f"AirflowDagLate firing for {dag_id}")

    stack_sh("stop", "collector")
    stack_sh("start", "collector")
    restarted = time.time()
    # The exporter forgot the gauge (the scraped copy goes stale; the pushed copy has no newer sample), and
    # no scheduler reports again: the alert must keep firing on the last known deadline.
    for _ in range(8):
        assert late(), f"AirflowDagLate for {dag_id} stopped firing {time.time() - restarted:.0f} s after the restart"
        time.sleep(5)
