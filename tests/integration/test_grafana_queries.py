"""Every query of the generated Grafana files, run the way Grafana runs it.

Local flavour: known telemetry is produced first by the plugin's own recorder (events, spans, delta metrics
through the real Collector), then every PromQL, LogsQL and Jaeger query of the dashboards, their variables,
data links, the datasources' links and the alert rules runs against Prometheus, VictoriaLogs and Jaeger with
Grafana's variables and macros substituted: each must succeed and return data. Grafana-stack flavour: every
LogQL and TraceQL query is parsed with Grafana's grammars (tests/grammar) with no error node.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import yaml

from grafana.generator import alerts, outputs
from grafana.generator.defaults import GRAFANA_STACK, LOCAL, Flavour
from otel_plugin.core import ids
from otel_plugin.readback import queries as Q
from testkit import stackutil
from tests.integration import test_query_dialects

error_nodes = test_query_dialects.error_nodes  # the grammar harness of tests/grammar, reused as is

WINDOW = "30m"  # $__range: the data below is minutes old
MACROS = {"$__range": WINDOW, "$__rate_interval": "1m", "$__interval": "15s"}
ALL = ".*"  # allValue of the multi-value Prometheus variables


# --- known telemetry, through the plugin's recorder ---------------------------------------------------------


class TaskRunnerMarker:
    """Makes the recorder act as in a task process (facts are taken, flushes wait)."""


def _utc(seconds_ago: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)


def _emit(gate: stackutil.Gate, dag_id: str, runs: list[dict[str, Any]]) -> None:
    """One process, like an Airflow worker plus scheduler: each run's task tries, then the run's end."""
    os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = stackutil.COLLECTOR_OTLP_HTTP
    from otel_plugin import api
    from otel_plugin.airflow import recorder
    from otel_plugin.core import pipeline

    recorder.set_role(TaskRunnerMarker())
    gate.wait()
    for run in runs:
        dag_run = SimpleNamespace(
            dag_id=dag_id,
            run_id=run["run_id"],
            run_type="manual",
            clear_number=0,
            context_carrier=None,
            state=run["state"],
            start_date=_utc(120),
            end_date=_utc(10),
        )
        for task_id, try_number, state, rows, error in run["tries"]:
            ti = SimpleNamespace(
                dag_id=dag_id,
                task_id=task_id,
                run_id=run["run_id"],
                try_number=try_number,
                max_tries=2,
                map_index=-1,
                state=state,
                start_date=_utc(100 - 10 * try_number),
                end_date=_utc(95 - 10 * try_number),
                hostname="grafana-test",
                operator="PythonOperator",
                pool="default_pool",
                queue="default",
                dag_run=dag_run,
            )
            recorder.task_running(ti, "queued")
            api.record_rows(read=rows, written=rows)
            api.record_check("totals_match", error is None)
            recorder.task_finished(ti, "running", state=state, error=RuntimeError(error) if error else None)
        recorder.dag_run_finished(dag_run, "task_failure" if run["state"] == "failed" else "success")
    pipe = pipeline.get()
    assert pipe is not None
    # The run's end flushes in the background (as in the scheduler): flush again once that one is done.
    stackutil.wait_until(lambda: pipe.flush(budget=5.0), timeout=30, interval=0.2, what="the final flush")


@pytest.fixture(scope="module")
def known(stack) -> SimpleNamespace:
    dag_id = f"grafana_{uuid.uuid4().hex[:8]}"
    failed, ok = f"manual__{_utc(0).isoformat()}", f"scheduled__{_utc(0).isoformat()}"
    runs = [
        {"run_id": failed, "state": "failed", "tries": [
            ("extract", 1, "success", 10, None),
            ("load", 1, "up_for_retry", 10, "bad row 7"),
            ("load", 2, "success", 0, None),  # succeeded with 0 rows
            ("report", 1, "failed", 3, "totals differ"),
        ]},
        {"run_id": ok, "state": "success", "tries": [("extract", 1, "success", 5, None)]},
    ]  # fmt: skip
    stackutil.run_processes(_emit, [(dag_id, runs)])
    known = SimpleNamespace(dag_id=dag_id, run_id=failed, trace_id=f"{ids.trace_id(dag_id, failed, 0):032x}")
    # Wait until every store has all of it: the root spans, the run's 9 events (4 tries, each running and
    # finished, and the run's end), the scraped counters.
    stackutil.wait_until(
        lambda: len(stackutil.jaeger_search({"dag_id": dag_id})) == 2, timeout=60, what="both traces in Jaeger"
    )
    stackutil.wait_until(
        lambda: len(stackutil.logsql(f'run_id:="{failed}" dag_id:="{dag_id}"')) == 9,
        timeout=60,
        what="the run's events in VictoriaLogs",
    )
    stackutil.wait_until(
        lambda: stackutil.prom_value(f'sum(airflow_otel_dag_run_finished_total{{dag_id="{dag_id}"}})') == 2,
        timeout=60,
        what="the counters",
    )
    return known


def substitute(text: str, known: SimpleNamespace, dialect: str) -> str:
    """Grafana's interpolation for this flavour's datasources, with the known run picked: regex-escaped values
    for the multi-value variables (Prometheus, Loki, Tempo), quoted into in() for VictoriaLogs."""
    for macro, value in MACROS.items():
        text = text.replace(macro, value)
    if dialect == "logsql":
        text = text.replace("in($dag_id)", f"in({Q.quote(known.dag_id)})")
    elif dialect != "jaeger":
        text = text.replace("$dag_id", Q.quote(Q.regex_escape(known.dag_id))[1:-1])
    values = {"service": stackutil.SERVICE_NAME,
              "dag_id": known.dag_id, "run_id": known.run_id, "task_id": ALL, "__value.raw": known.trace_id,
              "__trace.traceId": known.trace_id}
    for name, value in values.items():
        text = text.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert not re.search(r"\$[\w{]", text), f"unsubstituted variable left in {text}"
    return text


# --- collecting every query of a flavour ---------------------------------------------------------------------


def _dashboards(flavour: Flavour) -> dict[str, dict[str, Any]]:
    return {
        name: json.loads(outputs.committed(f"dashboards/{flavour.name}/{name}.json")) for name in outputs.DASHBOARDS
    }


def _provisioned(flavour: Flavour, kind: str, name: str) -> dict[str, Any]:
    text = outputs.committed(f"provisioning/{flavour.name}/{kind}/{name}").replace("$$", "$")
    return yaml.safe_load(text)


def collect(flavour: Flavour) -> list[tuple[str, str, dict[str, Any]]]:
    """(where, datasource type, query model) for every query the flavour's files hold."""
    found = []
    for name, data in _dashboards(flavour).items():
        for panel in data["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{name}: {panel['title']} {target['refId']}", target["datasource"]["type"], target))
        for variable in data["templating"]["list"]:
            if variable["type"] == "query":
                found.append(
                    (
                        f"{name}: variable {variable['name']}",
                        variable["datasource"]["type"],
                        {"variable": variable["query"]},
                    )
                )
        for node in outputs.walk(data):
            internal = node.get("internal")
            if isinstance(internal, dict):
                ds_type = flavour.logs.type if internal["datasourceUid"] == flavour.logs.uid else "?"
                found.append((f"{name}: link {node['title']}", ds_type, internal["query"]))
    for ds in _provisioned(flavour, "datasources", "datasources.yaml")["datasources"]:
        to_logs = ds["jsonData"].get("tracesToLogsV2")
        if to_logs:
            found.append(
                (
                    f"datasource {ds['name']}: tracesToLogsV2",
                    flavour.logs.type,
                    {"expr": to_logs["query"], "queryType": "instant"},
                )
            )
    return found


# --- the local flavour against the real stores ---------------------------------------------------------------


def _ok(resp: requests.Response) -> requests.Response:
    assert resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:500]}"
    return resp


def run_prometheus(model: dict[str, Any], known: SimpleNamespace) -> int:
    """Number of series (or variable values) the query returns."""
    now = time.time()
    if "variable" in model:
        selector, label = re.fullmatch(r"label_values\((.+), (\w+)\)", model["variable"]).groups()
        params = {"match[]": substitute(selector, known, "promql"), "start": now - 3600, "end": now}
        url = f"{stackutil.PROMETHEUS}/api/v1/label/{label}/values"
        return len(_ok(requests.get(url, params=params, timeout=10)).json()["data"])
    expr = substitute(model["expr"], known, "promql")
    if model.get("instant"):
        body = _ok(requests.get(f"{stackutil.PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=10)).json()
    else:
        params = {"query": expr, "start": now - 1800, "end": now, "step": 15}
        body = _ok(requests.get(f"{stackutil.PROMETHEUS}/api/v1/query_range", params=params, timeout=10)).json()
    return len(body["data"]["result"])


def run_victorialogs(model: dict[str, Any], known: SimpleNamespace) -> int:
    """Number of records (or field values) the query returns over the last hour."""
    window = {"start": f"{int(time.time()) - 3600}", "end": f"{int(time.time())}"}
    if "variable" in model:
        variable = model["variable"]
        params = {**window, "query": substitute(variable["query"], known, "logsql"), "field": variable["field"]}
        url = f"{stackutil.VICTORIALOGS}/select/logsql/field_values"
        values = [v["value"] for v in _ok(requests.post(url, data=params, timeout=10)).json()["values"]]
        assert {"dag_id": known.dag_id, "run_id": known.run_id}[variable["field"]] in values, values
        return len(values)
    assert model["queryType"] == "instant", model
    params = {**window, "query": substitute(model["expr"], known, "logsql"), "limit": "1000"}
    text = _ok(requests.post(f"{stackutil.VICTORIALOGS}/select/logsql/query", data=params, timeout=10)).text
    return len([line for line in text.splitlines() if line.strip()])


def logfmt(text: str) -> dict[str, str]:
    """Parses logfmt as Grafana's Jaeger datasource does before it sends the tags as JSON."""
    pairs = re.findall(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)', text)
    return {key: json.loads(value) if value.startswith('"') else value for key, value in pairs}


def run_jaeger(model: dict[str, Any], known: SimpleNamespace) -> int:
    """Number of traces the search returns (the datasource sends the dashboard's time range)."""
    assert model["queryType"] == "search"
    now_us = int(time.time() * 1e6)
    tags = logfmt(substitute(model["tags"], known, "jaeger"))
    params = {
        "service": substitute(model["service"], known, "jaeger"),
        "tags": json.dumps(tags),
        "limit": model["limit"],
        "start": now_us - 3600 * 10**6,
        "end": now_us,
        "lookback": "custom",
    }
    traces = _ok(requests.get(f"{stackutil.JAEGER}/api/traces", params=params, timeout=10)).json()["data"]
    return len(traces or [])


RUNNERS = {"prometheus": run_prometheus, "victoriametrics-logs-datasource": run_victorialogs, "jaeger": run_jaeger}


@pytest.mark.stack
def test_every_local_query_succeeds_and_returns_data(known):
    found = collect(LOCAL)
    assert len(found) >= 20 and {t for _, t, _ in found} == set(RUNNERS)
    empty = []
    for where, ds_type, model in found:
        count = (
            stackutil.wait_until(lambda m=model, t=ds_type: RUNNERS[t](m, known), timeout=20, what=f"data for {where}")
            if ds_type
            else 0
        )
        if not count:
            empty.append(where)
    assert not empty, f"no data: {empty}"


@pytest.mark.stack
def test_negative_control_another_dag_returns_no_data(known):
    other = SimpleNamespace(dag_id=f"absent_{uuid.uuid4().hex[:8]}", run_id="none", trace_id="0" * 32)
    checked = 0
    for where, ds_type, model in collect(LOCAL):
        if "variable" not in model and ("dag_id" in json.dumps(model) or "trace" in json.dumps(model)):
            assert RUNNERS[ds_type](model, other) == 0, where
            checked += 1
    assert checked >= 15


@pytest.mark.stack
def test_alert_rules_fire_on_the_known_run_and_only_where_expected(known):
    rules = yaml.safe_load(outputs.committed(outputs.PROMETHEUS_RULES))["groups"][0]["rules"]
    firing = {}
    for rule in rules:
        result = stackutil.prom_query(rule["expr"])
        firing[rule["alert"]] = sorted(
            r["metric"].get("task_id", "") for r in result if r["metric"].get("dag_id") == known.dag_id
        )
    assert firing == {
        "AirflowDagLate": [],  # the schedule's gauges come from a scheduler, and none ran this DAG
        "AirflowDagRunStuck": [],
        "AirflowDagImportError": [],  # by file, not by DAG
        "AirflowSchedulerSilent": [],  # a global rule: no dag_id
        "AirflowDagFailureRatio": [""],  # 1 of 2 runs failed: 0.5 > 0.2
        "AirflowTaskFailures": [],  # one final failure (report) is under the threshold of 3
        "AirflowDataCheckFailed": ["load", "report"],  # the tries with an error failed totals_match
        "AirflowDagRunSlow": [],  # runs took seconds
        "AirflowTaskZeroRows": ["load"],
    }
    # The Grafana-managed rules' queries return the DAG too, except those fed by a scheduler's schedule report.
    from_scheduler = {"AirflowDagLate", "AirflowDagRunStuck", "AirflowDagImportError", "AirflowSchedulerSilent"}
    for alert in (a for a in alerts.ALERTS if a.name not in from_scheduler):
        assert any(r["metric"]["dag_id"] == known.dag_id for r in stackutil.prom_query(alert.expr)), alert.uid


# --- the grafana-stack flavour with Grafana's grammars ----------------------------------------------------


def test_every_grafana_stack_logql_and_traceql_query_parses(error_nodes):
    known = SimpleNamespace(dag_id="etl.v2", run_id="manual__2026-11-27T01:02:03.456+00:00", trace_id="ab" * 16)
    texts: dict[str, list[tuple[str, str]]] = {"logql": [], "traceql": []}
    for where, ds_type, model in collect(GRAFANA_STACK):
        if ds_type == "loki":
            texts["logql"].append((where, substitute(model["expr"], known, "logql")))
        elif ds_type == "tempo":
            texts["traceql"].append((where, substitute(model["query"], known, "traceql")))
    assert len(texts["logql"]) >= 4 and len(texts["traceql"]) >= 3
    for dialect, items in texts.items():
        counts = error_nodes(dialect, [text for _, text in items])
        bad = [f"{where}: {text}" for (where, text), n in zip(items, counts, strict=True) if n]
        assert not bad, "\n".join(bad)
    assert error_nodes("logql", ['{service_name="airflow"} | trace_id="$trace']) != [0]  # negative control
