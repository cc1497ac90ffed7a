"""Two Airflow environments (OTEL_SERVICE_NAME airflow-a-*, airflow-b-*) run the SAME DAG and run id into the
one native stack: each is found by `python -m otel_plugin lookup` (--service, or its configured
OTEL_SERVICE_NAME) with exactly its own events and its own trace, the catalogue's PromQL and Jaeger searches
for one service count only that service, and the default service name finds neither."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from otel_plugin.core import ids
from otel_plugin.readback import queries as Q
from testkit import harness as h
from testkit import stackutil as su

pytestmark = pytest.mark.stack


def lookup_cli(dag_id: str, run_id: str, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "otel_plugin", "lookup", "--dag", dag_id, "--run", run_id, "--json", *extra]
    return subprocess.run(args, env=env, cwd=su.ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_two_environments_in_one_store_stay_apart_and_each_is_found(stack: None, tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:10]
    dag_id, run_id = f"svc_{uid}", f"scheduled__{uid}"
    environments = {f"airflow-a-{uid}": ["extract", "load"], f"airflow-b-{uid}": ["extract"]}
    for service, tasks in environments.items():
        env = h.plugin_env(tmp_path / service, OTEL_SERVICE_NAME=service)
        h.run_tasks(h.task_specs(dag_id, run_id, tasks, dag_run="success"), env)

    plain = {k: v for k, v in h.plugin_env(tmp_path / "x").items() if not k.startswith("OTEL_")}
    for service, tasks in environments.items():
        want = h.expected_for(len(tasks))
        trace_id = ids.trace_id(dag_id, run_id, 0, service=service)
        # Its trace, its spans only (the same DAG and run id in the other environment is another trace).
        su.wait_until(
            lambda t=trace_id: su.jaeger_trace(t),
            ok=lambda tr, w=want: bool(tr) and len(tr["spans"]) == w.spans,
            timeout=90,
            what=f"{service}'s trace",
        )
        found = su.wait_until(
            lambda s=service: lookup_cli(dag_id, run_id, plain, "--service", s),
            ok=lambda p, w=want: p.returncode == 0 and len(json.loads(p.stdout)["events"]) == w.events,
            timeout=90,
            what=f"lookup --service {service}",
        )
        body = json.loads(found.stdout)
        assert body["service"] == service
        assert list(body["traces"]) == [f"{trace_id:032x}"]
        assert len(body["traces"][f"{trace_id:032x}"]) == want.spans
        assert f'{{service.name="{service}"}}' in body["queries"]["run_timeline"]["logsql"]

        # No flag: the configured OTEL_SERVICE_NAME decides, as in the environment's own shell.
        configured = lookup_cli(dag_id, run_id, {**plain, "OTEL_SERVICE_NAME": service})
        assert configured.returncode == 0, configured.stderr
        assert len(json.loads(configured.stdout)["events"]) == want.events

        # Metrics: Prometheus keeps service.name as job, and the catalogue's query selects it. Counted from the
        # counter itself: increase() extrapolates past the samples of a new series (2.07 for 2, up to 1.5x).
        promql = Q.render(Q.get("task_counts"), "promql", service=service, dag_id=dag_id)
        assert f'job="{service}"' in promql
        counter = f'{su.FINISHED}{{job="{service}", dag_id="{dag_id}"}}'
        counted = su.wait_until(
            lambda c=counter: su.prom_value(f"sum(max_over_time({c}[1h]))"),
            ok=lambda v, w=want: v == w.finished,
            timeout=90,
            what=f"{service}'s task count",
        )
        assert counted == want.finished
        traces = su.jaeger_search({"dag_id": dag_id, "run_id": run_id}, service=service)
        assert [t["traceID"] for t in traces] == [f"{trace_id:032x}"]

    missing = lookup_cli(dag_id, run_id, plain)  # the default service name, airflow: neither environment
    assert missing.returncode == 2 and "no events for DAG" in missing.stderr and "'airflow'" in missing.stderr
    both = Q.render(Q.get("task_counts"), "promql", service=Q.ANY_SERVICE, dag_id=dag_id)
    assert "job=" not in both
    every = su.prom_value(f'sum(max_over_time({su.FINISHED}{{dag_id="{dag_id}"}}[1h]))')
    assert every == sum(len(t) for t in environments.values())
