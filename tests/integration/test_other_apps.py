"""Only this plugin's telemetry gets the Collector's delta treatment (issue 22 item 6): another application's
cumulative metrics sent to the same receiver keep their own per-instance series, unchanged, while our deltas
sent at the same moment still add up exactly.

Before the change, every metric on the receiver lost its service.instance.id: another application's counter at
10 on one instance and 20 on another read 20 in Prometheus, one series, instead of two adding up to 30.
Airflow's own `[metrics] otel_on` metrics are such another application: tests/airflow/test_with_airflow_own_metrics.py
checks them in a real run.
"""

from __future__ import annotations

import uuid

import pytest

from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]

PROPAGATION_S = 60


def test_another_apps_cumulative_counter_keeps_its_instances_beside_our_exact_deltas() -> None:
    uid = uuid.uuid4().hex[:12]
    theirs, ours = f"otherapp.{uid}.requests", f"stacktest.{uid}.mixed"
    ours_attrs = {"dag_id": f"dag_{uid}", "task_id": "t", "state": "success"}
    senders = [
        (su.send_cumulative_counter, ("other-app", "instance-a", "other_app.http", theirs, 10)),
        (su.send_cumulative_counter, ("other-app", "instance-b", "other_app.http", theirs, 20)),
    ]
    su.run_processes(su.send_cumulative_counter, [args for _, args in senders])
    su.run_processes(su.send_delta_metrics, [(ours, ours_attrs)] * 10)

    their_total, our_total = f"otherapp_{uid}_requests_total", f"stacktest_{uid}_mixed_total"
    series = su.wait_until(lambda: su.prom_query(their_total), ok=lambda r: len(r) == 2, timeout=PROPAGATION_S,
                           what=their_total)
    by_instance = {s["metric"].get("instance"): float(s["value"][1]) for s in series}
    assert by_instance == {"instance-a": 10.0, "instance-b": 20.0}
    assert all(s["metric"]["job"] == "other-app" and s["metric"]["route"] == "/work" for s in series)
    su.wait_until(lambda: su.prom_value(our_total), ok=lambda v: v == 10, timeout=PROPAGATION_S, what=our_total)
    assert len(su.prom_query(our_total)) == 1
