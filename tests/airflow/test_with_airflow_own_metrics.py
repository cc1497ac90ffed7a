"""Airflow's own OpenTelemetry metrics and another application's, beside ours, in one Collector (issue 22
item 6): real Airflow 3 with ``[metrics] otel_on`` (tests/airflow/conftest.py) and the plugin, both sending
to the stack's Collector during a multi-process run, while another application's cumulative counter arrives
there too. Our counts stay exact. Airflow's metrics and the other counter reach Prometheus as they were
sent: under Airflow's own service name, each process's cumulative series apart under its own
service.instance.id (our aggregated path strips it and would have stamped the aggregator's instead).
Before the routing, the two failed tries of the mapped task, two processes, read 1 in Airflow's
ti.finish; here they are two series adding up to 2, and Airflow's per-task-try counts match ours.

Runs under Airflow 3 (``.venv``; the metric names are 3.x's); shares the deployment of test_airflow_runs.py
(after it: its in-process run wants no scheduler).
"""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from testkit import stackutil as su

from .test_airflow_runs import EXPECTED

pytestmark = [pytest.mark.airflow, pytest.mark.stack]

DAG = "plugin_check_own_metrics"
AGGREGATOR = "otelcol-airflow"  # the instance our aggregated series carry (collector/config.yaml step 7)
PROPAGATION_S = 90


def _ours() -> Counter:
    """Our finished-task counter for the DAG, by (task_id, state)."""
    series = su.prom_query(f'sum by (task_id, state) (airflow_otel_task_instance_finished_total{{dag_id="{DAG}"}})')
    return Counter({(s["metric"]["task_id"], s["metric"]["state"]): int(float(s["value"][1])) for s in series})


def test_airflow_own_metrics_and_another_apps_counter_pass_unchanged_beside_our_exact_counts(airflow) -> None:
    service = airflow.env["AIRFLOW__METRICS__OTEL_SERVICE"]
    before = _ours()
    airflow.start(*airflow.COMPONENTS)
    airflow.wait_for_dag(DAG)
    run_id = airflow.trigger(DAG, run_id=f"own_{uuid.uuid4().hex[:8]}")

    # Another application's cumulative counter, two instances, while the run goes.
    uid = uuid.uuid4().hex[:12]
    theirs = f"otherapp.{uid}.requests"
    su.run_processes(su.send_cumulative_counter, [("other-app", "instance-a", "other_app.http", theirs, 10),
                                                  ("other-app", "instance-b", "other_app.http", theirs, 20)])
    assert airflow.wait_for_run(DAG, run_id, timeout=300) == "failed"

    # Ours: exactly one run's worth more.
    su.wait_until(lambda: _ours() - before, lambda grown: grown == EXPECTED, timeout=PROPAGATION_S,
                  what="our finished-task counts")
    assert len(su.prom_query(f'airflow_otel_task_instance_finished_total{{dag_id="{DAG}"}}')) == len(EXPECTED)

    # Airflow's, from each task process (cumulative, one series per process): what the run did, try by try.
    # Ours has one more: the task that never ran (upstream_failed), which the plugin reconciles.
    ran = EXPECTED - Counter({("collect", "upstream_failed"): 1})
    selector = f'airflow_ti_finish_total{{job="{service}", dag_id="{DAG}"}}'
    series = su.wait_until(lambda: su.prom_query(selector), lambda r: len(r) == sum(ran.values()),
                           timeout=PROPAGATION_S, what="Airflow's ti.finish, one series per task try")
    assert [s["value"][1] for s in series] == ["1"] * len(series)
    assert Counter((s["metric"]["task_id"], s["metric"]["state"]) for s in series) == ran
    instances = {s["metric"].get("instance") for s in series}
    assert len(instances) == len(series) and None not in instances and AGGREGATOR not in instances

    # The scheduler's: the task instances it created when the run started, exactly (one per task; a mapped
    # task's further ones come at its expansion, which this counter does not count: Airflow 3.3,
    # DagRun._create_task_instances), and its heartbeat, still counting.
    created = len({ti["task_id"] for ti in airflow.task_instances(DAG, run_id)})
    expr = f'sum(airflow_task_instance_created_total{{job="{service}", dag_id="{DAG}"}})'
    su.wait_until(lambda: su.prom_value(expr), lambda v: v == created, timeout=PROPAGATION_S,
                  what="Airflow's task_instance_created")
    # (A scheduler another test restarted leaves its series too, until Prometheus's lookback passes.)
    heartbeat = f'airflow_scheduler_heartbeat_total{{job="{service}"}}'
    beats = su.prom_query(heartbeat)
    assert beats and all(b["metric"].get("instance") not in (None, AGGREGATOR) for b in beats), beats
    counted = sum(float(b["value"][1]) for b in beats)
    su.wait_until(lambda: su.prom_value(f"sum({heartbeat})"), lambda v: v is not None and v > counted,
                  timeout=30, what="a later scheduler heartbeat")
    # Nothing of Airflow's took our aggregated path.
    assert su.prom_query(f'{{job="{service}", instance="{AGGREGATOR}"}}') == []

    # The other application: one series per instance, as sent.
    their_total = f"otherapp_{uid}_requests_total"
    found = su.wait_until(lambda: su.prom_query(their_total), lambda r: len(r) == 2, timeout=PROPAGATION_S,
                          what=their_total)
    assert {s["metric"].get("instance"): float(s["value"][1]) for s in found} == {"instance-a": 10.0,
                                                                                  "instance-b": 20.0}
