"""Every query of the catalogue is valid in every dialect, with awkward values and with Grafana variables.

LogQL and TraceQL: parsed by Grafana's own editor grammars (tests/grammar, npm @grafana/lezer-logql 0.4.2 and
@grafana/lezer-traceql 1.0.0); no error node allowed. PromQL: Prometheus's /api/v1/parse_query. LogsQL: run
against VictoriaLogs, which answers a query it cannot parse with HTTP 400. Jaeger: each search runs against
Jaeger's HTTP API. Each check has a negative control, so it can fail.

Values are printable: control characters are written as Go escapes (\\n), which Loki and Tempo read but
Grafana's TraceQL grammar flags; Airflow's dag, task and run ids cannot contain them.

Template-variable renderings are checked the way Grafana runs them: variables and macros interpolated first
(multi-value variables regex-escaped, as Grafana's Prometheus, Loki and Tempo datasources do, or quoted into
``in(...)`` as the VictoriaLogs datasource does).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from otel_plugin.__main__ import main
from otel_plugin.core import ids
from otel_plugin.readback import queries as Q
from otel_plugin.readback.stores import Jaeger, StoreError, VictoriaLogs
from testkit import stackutil

GRAMMAR_DIR = Path(__file__).resolve().parents[1] / "grammar"
RUN_IDS = (
    "manual__2026-11-27T01:02:03.456+00:00",
    "scheduled__2026-01-01T00:00:00+00:00",
    'odd "quoted" back\\slash\\ and spaces',
    "regex.*+?()[]{}|^$ metacharacters",
)
DAG_IDS = ("etl", "etl.v2+beta", 'quote"and\\backslash')
MULTI = {"dag_id": ("etl", "etl.v2+beta"), "task_id": ("extract", "load[0]"), "state": ("failed", "up_for_retry")}
# What Grafana puts in for its macros and for each variable when a dashboard runs.
GRAFANA_MACROS = {"$__range": "1h", "$__rate_interval": "1m"}
GRAFANA_VALUES = {**MULTI, "run_id": (RUN_IDS[0],)}


def _value_sets(query: Q.Query, dialect: str) -> Iterator[dict[str, Q.FilterValue]]:
    """Single awkward values for every filter, then several values for the multi-value filters."""
    for i, run_id in enumerate(RUN_IDS):
        yield {f: run_id if f == "run_id" else DAG_IDS[i % len(DAG_IDS)] for f in query.filters}
    if dialect != "jaeger":  # Jaeger's tag search takes one value per tag
        yield {f: MULTI.get(f, RUN_IDS[0]) for f in query.filters}


def _grafana_interpolate(text: str, dialect: str) -> str:
    for macro, value in GRAFANA_MACROS.items():
        text = text.replace(macro, value)
    for field, values in GRAFANA_VALUES.items():
        if Q.FILTER_FIELDS[field] and dialect == "logsql":  # in($var) -> in("a","b")
            text = text.replace(f"${field}", ",".join(Q.quote(v) for v in values))
        elif Q.FILTER_FIELDS[field] and dialect != "jaeger":  # =~"$var" -> =~"a|b", regex-escaped
            text = text.replace(f"${field}", Q.quote("|".join(Q.regex_escape(v) for v in values))[1:-1])
        else:
            text = text.replace(f"${field}", Q.quote(values[0])[1:-1])
    return text


def renderings(dialect: str) -> list[tuple[str, str]]:
    """(label, query text) for every query of the catalogue in this dialect: values, then Grafana's."""
    found = []
    for query in Q.CATALOGUE:
        if dialect not in query.dialects:
            continue
        for n, values in enumerate(_value_sets(query, dialect)):
            found.append((f"{query.name}[values {n}]", Q.render(query, dialect, **values)))
        grafana = Q.render_for_grafana(query, dialect)
        if dialect == "jaeger":
            grafana = Q.render(query, dialect, **{f: GRAFANA_VALUES[f][0] for f in query.filters})
        found.append((f"{query.name}[grafana]", _grafana_interpolate(grafana, dialect)))
    return found


# --- LogQL and TraceQL: Grafana's grammars ----------------------------------------------------------------


@pytest.fixture(scope="module")
def error_nodes() -> Callable[[str, list[str]], list[int]]:
    """Counts the error nodes each query has under Grafana's grammar for the dialect."""
    for tool in ("node", "npm"):
        assert shutil.which(tool), f"{tool} is needed for the grammar checks (apt-get install nodejs npm)"
    if not (GRAMMAR_DIR / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=GRAMMAR_DIR, check=True, timeout=300)

    def count(dialect: str, texts: list[str]) -> list[int]:
        items = json.dumps([{"dialect": dialect, "query": t} for t in texts])
        proc = subprocess.run(
            ["node", "count-errors.mjs"],
            cwd=GRAMMAR_DIR,
            input=items,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return [item["errors"] for item in json.loads(proc.stdout)]

    return count


@pytest.mark.parametrize("dialect", ["logql", "traceql"])
def test_every_catalogue_query_parses_with_no_error_node(dialect, error_nodes):
    found = renderings(dialect)
    assert len(found) >= 15
    counts = error_nodes(dialect, [text for _, text in found])
    bad = [
        f"{label}: {errors} error node(s) in {text}"
        for (label, text), errors in zip(found, counts, strict=True)
        if errors
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("dialect", "broken"),
    [
        ("logql", '{service_name="airflow"} | run_id='),
        ("logql", '{service_name="airflow"} | run_id="unescaped " quote"'),
        ("logql", '{service_name="airflow"} | dag_id="etl" [1h]'),
        ("traceql", '{ span.dag_id = "etl" && }'),
        ("traceql", '{ span.run_id = "unescaped " quote" }'),
    ],
)
def test_negative_control_broken_queries_have_error_nodes(dialect, broken, error_nodes):
    assert error_nodes(dialect, [broken]) != [0]


# --- PromQL, LogsQL and Jaeger: the stores themselves -----------------------------------------------------


def _assert_each_accepted(dialect: str, check: Callable[[str], object]) -> None:
    """Runs check on every rendering of the dialect; fails listing each one the store refused."""
    refused = []
    for label, text in renderings(dialect):
        try:
            check(text)
        except StoreError as err:
            refused.append(f"{label}: {err}\n    {text}")
    assert not refused, "\n".join(refused)


@pytest.mark.stack
def test_every_promql_query_parses_in_prometheus(stack):
    prometheus = stackutil.PromQL()
    _assert_each_accepted("promql", prometheus.parse_query)
    with pytest.raises(StoreError, match="HTTP 400"):
        prometheus.parse_query('sum by (dag_id (increase(x{dag_id="a"}[1h]))')


@pytest.mark.stack
def test_every_logsql_query_runs_in_victorialogs(stack):
    victorialogs = VictoriaLogs()
    _assert_each_accepted("logsql", lambda text: victorialogs.query(text, limit=1))
    with pytest.raises(StoreError, match="HTTP 400"):
        victorialogs.query('dag_id:in("a" | sort by (_time)')
    with pytest.raises(StoreError, match="HTTP 400"):
        victorialogs.query('run_id:="unescaped " quote"')


@pytest.mark.stack
def test_every_jaeger_search_runs_in_jaeger(stack):
    jaeger = Jaeger()
    _assert_each_accepted("jaeger", lambda text: jaeger.search(dict(parse_qsl(text))))
    with pytest.raises(StoreError, match="HTTP 400"):
        jaeger.search({"service": "airflow", "tags": '{"dag_id": '})


# --- the lookup against the real stores -------------------------------------------------------------------


@pytest.mark.stack
def test_lookup_of_an_unknown_run_is_one_line_and_exit_2(stack, capsys):
    assert main(["lookup", "--dag", "no_such_dag", "--run", f"missing-{uuid.uuid4()}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("airflow-otel: error: no events for DAG 'no_such_dag' run 'missing-")
    assert err.count("\n") == 1


@pytest.mark.stack
def test_lookup_shows_events_and_trace_sent_through_the_collector(stack, capsys):
    dag_id, run_id = f"lookup_{uuid.uuid4().hex[:8]}", RUN_IDS[0] + ' "odd"'
    trace, root = ids.trace_id(dag_id, run_id), ids.root_span_id(dag_id, run_id)
    common = {"dag_id": dag_id, "run_id": run_id, "trace_id": f"{trace:032x}"}
    events = [
        (
            "task extract success",
            {
                **common,
                "event": "task_instance",
                "task_id": "extract",
                "try_number": 1,
                "map_index": -1,
                "state": "success",
                "rows_read": 0,
                "zero_rows": True,
            },
        ),
        (
            "task load failed",
            {
                **common,
                "event": "task_instance",
                "task_id": "load",
                "try_number": 1,
                "map_index": 3,
                "state": "failed",
                "error.type": "ValueError",
                "error.message": "bad row",
            },
        ),
    ]
    for body, attributes in events:  # one after the other: the timeline's order is the send order
        stackutil.run_processes(stackutil.send_log_event, [(body, attributes)])
        time.sleep(0.01)
    spans = [
        (f"RUN {dag_id}", trace, root, None, common),
        ("task extract", trace, ids.task_span_id(dag_id, run_id, 0, "extract", -1, 1), root, common),
    ]
    stackutil.run_processes(stackutil.send_span, spans)

    def looked_up() -> str | None:
        code = main(["lookup", "--dag", dag_id, "--run", run_id])
        out = capsys.readouterr().out
        complete = ": 2 events from" in out and "  task extract" in out and "(not found" not in out
        return out if code == 0 and complete else None  # both events indexed, both spans stored

    out = stackutil.wait_until(looked_up, timeout=30, what="the run's events and trace")
    lines = out.splitlines()
    extract = next(i for i, line in enumerate(lines) if " extract " in line and "success" in line)
    load = next(i for i, line in enumerate(lines) if " load " in line)
    assert extract < load
    assert "zero_rows=true" in lines[extract] and "ValueError: bad row" in lines[load]
    assert f"Trace {trace:032x}" in out
    root_line = next(line for line in lines if line.startswith(f"RUN {dag_id}"))
    assert root_line.rstrip().endswith("ok")
    assert any(line.startswith("  task extract") for line in lines)


@pytest.mark.stack
def test_lookup_reports_an_unreachable_trace_store(stack, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    dag_id, run_id = f"lookup_{uuid.uuid4().hex[:8]}", "manual__x"
    stackutil.run_processes(
        stackutil.send_log_event,
        [("e", {"event": "dag_run", "dag_id": dag_id, "run_id": run_id, "trace_id": "ab" * 16})],
    )
    stackutil.wait_until(
        lambda: VictoriaLogs().query(Q.render(Q.get("run_timeline"), "logsql", dag_id=dag_id, run_id=run_id)),
        timeout=30,
    )
    url = f"http://127.0.0.1:{closed}"
    assert main(["lookup", "--dag", dag_id, "--run", run_id, "--jaeger-url", url, "--timeout", "2"]) == 2
    assert (
        capsys.readouterr().err
        == f"airflow-otel: error: jaeger at {url} is unreachable: [Errno 111] Connection refused\n"
    )
