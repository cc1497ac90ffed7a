"""Run lookup: timeline rows and text, span trees from Jaeger and Tempo structures, the CLI's error paths."""

from __future__ import annotations

import argparse
import base64
import json
import socket
import subprocess
import sys

import pytest

from otel_plugin.__main__ import main
from otel_plugin.readback import lookup, stores
from otel_plugin.readback.stores import Span

RUN = "manual__2026-11-27T01:02:03.456+00:00"

# Records as VictoriaLogs returns them (every field a string), oldest first.
VICTORIALOGS_RECORDS = [
    {
        "_time": "2026-11-27T01:02:03.456789Z",
        "event": "dag_run",
        "dag_id": "etl",
        "run_id": RUN,
        "state": "running",
        "trace_id": "ab" * 16,
    },
    {
        "_time": "2026-11-27T01:02:05.1Z",
        "event": "task_instance",
        "task_id": "extract",
        "try_number": "1",
        "map_index": "-1",
        "state": "success",
        "duration_s": "1.234",
        "rows_read": "10",
        "rows_written": "10",
        "zero_rows": "false",
        "check.not_empty": "passed",
        "fact.source": "s3://bucket",
        "trace_id": "ab" * 16,
    },
    {
        "_time": "2026-11-27T01:02:06Z",
        "event": "task_instance",
        "task_id": "fan_out",
        "try_number": "2",
        "map_index": "7",
        "state": "failed",
        "duration_s": "0.5",
        "error.type": "ValueError",
        "error.message": "item 7 is bad",
        "trace_id": "ab" * 16,
    },
    {
        "_time": "2026-11-27T01:02:07Z",
        "event": "task_instance",
        "task_id": "load",
        "state": "upstream_failed",
        "reconciled": "true",
        "rows_written": "0",
        "zero_rows": "true",
        "trace_id": "ab" * 16,
    },
]


def test_timeline_rows_take_fields_tries_map_indexes_errors_and_facts():
    rows = lookup.timeline_rows(VICTORIALOGS_RECORDS)
    assert [r.task_id for r in rows] == ["", "extract", "fan_out", "load"]
    extract, fan_out, load = rows[1:]
    assert (extract.try_number, extract.map_index, extract.state) == ("1", "", "success")
    assert extract.facts == {
        "rows_read": "10",
        "rows_written": "10",
        "check.not_empty": "passed",
        "fact.source": "s3://bucket",
    }
    assert (fan_out.map_index, fan_out.error) == ("7", "ValueError: item 7 is bad")
    assert load.reconciled and load.facts == {"rows_written": "0", "zero_rows": "true"}


def test_timeline_rows_read_loki_underscore_names():
    loki_record = {
        "_time": "2026-11-27T01:02:06Z",
        "event": "task_instance",
        "task_id": "t",
        "map_index": "3",
        "error_type": "KeyError",
        "error_message": "x",
        "fact_owner": "data-team",
        "rows_read": "0",
    }
    (row,) = lookup.timeline_rows([loki_record])
    assert row.error == "KeyError: x"
    assert row.facts == {"rows_read": "0", "fact_owner": "data-team"}


def test_timeline_text_in_order_with_aligned_columns():
    text = lookup.format_timeline(lookup.timeline_rows(VICTORIALOGS_RECORDS))
    lines = text.splitlines()
    assert lines[0].split() == ["TIME", "TASK", "TRY", "MAP", "STATE", "DURATION", "DETAILS"]
    assert lines[1].startswith("2026-11-27 01:02:03.456  (dag run)")
    assert lines[2].startswith("2026-11-27 01:02:05.100  extract")
    assert "1.23s" in lines[2] and "rows_read=10" in lines[2] and "check.not_empty=passed" in lines[2]
    assert "ValueError: item 7 is bad" in lines[3]
    assert "(recorded by the scheduler)" in lines[4] and "zero_rows=true" in lines[4]
    state_column = lines[0].index("STATE")
    assert all(
        line[state_column:].split()[0] in {"running", "success", "failed", "upstream_failed"} for line in lines[1:]
    )


def _span(span_id: str, parent: str | None, name: str, start: int, **attrs: object) -> Span:
    return Span(span_id, parent, name, start, 1_500_000, name.endswith("bad"), dict(attrs))


def test_span_tree_orders_children_by_start_and_keeps_orphans_as_roots():
    spans = [
        _span("c2", "r", "task load", 30),
        _span("r", None, "dag_run etl", 0),
        _span("c1", "r", "task extract", 10),
        _span("g", "c1", "inner", 11),
        _span("o", "missing-parent", "orphan", 5),
    ]
    tree = [(depth, s.span_id) for depth, s in lookup.span_tree(spans)]
    assert tree == [(0, "r"), (1, "c1"), (2, "g"), (1, "c2"), (0, "o")]


def test_tree_text_indents_and_shows_try_map_duration_status():
    spans = [
        _span("r", None, "dag_run etl", 0),
        _span("a", "r", "task fan_out bad", 1, try_number=2, map_index=7),
        _span("b", "r", "task extract", 2, try_number=1, map_index=-1),
    ]
    lines = lookup.format_tree(spans).splitlines()
    assert lines[0].startswith("dag_run etl ") and lines[0].endswith("1.50s  ok")
    assert lines[1].startswith("  task fan_out bad (try 2, map 7)") and lines[1].endswith("ERROR")
    assert lines[2].startswith("  task extract (try 1) ")


def test_jaeger_trace_structure_becomes_spans():
    trace = {
        "traceID": "ab" * 16,
        "spans": [
            {
                "spanID": "01" * 8,
                "operationName": "dag_run etl",
                "references": [],
                "startTime": 100,
                "duration": 50,
                "tags": [{"key": "dag_id", "type": "string", "value": "etl"}],
            },
            {
                "spanID": "02" * 8,
                "operationName": "task load",
                "startTime": 110,
                "duration": 5,
                "references": [{"refType": "CHILD_OF", "traceID": "ab" * 16, "spanID": "01" * 8}],
                "tags": [
                    {"key": "error", "type": "bool", "value": True},
                    {"key": "try_number", "type": "int64", "value": 1},
                ],
            },
        ],
    }
    root, task = stores.jaeger_spans(trace)
    assert (root.parent_id, root.error, root.attributes) == (None, False, {"dag_id": "etl"})
    assert (task.parent_id, task.error, task.start_us, task.duration_us) == ("01" * 8, True, 110, 5)


def test_tempo_otlp_json_with_base64_ids_becomes_spans():
    b64 = lambda hexid: base64.b64encode(bytes.fromhex(hexid)).decode()  # noqa: E731
    trace = {
        "batches": [
            {
                "resource": {},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": b64("ab" * 16),
                                "spanId": b64("01" * 8),
                                "name": "dag_run etl",
                                "startTimeUnixNano": "1000000",
                                "endTimeUnixNano": "5000000",
                                "status": {},
                            },
                            {
                                "traceId": b64("ab" * 16),
                                "spanId": b64("02" * 8),
                                "parentSpanId": b64("01" * 8),
                                "name": "task t",
                                "startTimeUnixNano": "2000000",
                                "endTimeUnixNano": "3000000",
                                "status": {"code": "STATUS_CODE_ERROR"},
                                "attributes": [
                                    {"key": "try_number", "value": {"intValue": "2"}},
                                    {"key": "task_id", "value": {"stringValue": "t"}},
                                ],
                            },
                        ]
                    }
                ],
            }
        ]
    }
    root, task = stores.otlp_spans(trace)
    assert (root.span_id, root.parent_id, root.duration_us, root.error) == ("01" * 8, None, 4000, False)
    assert (task.parent_id, task.error, task.attributes) == ("01" * 8, True, {"try_number": 2, "task_id": "t"})
    hex_trace = {
        "trace": {
            "resourceSpans": [
                {
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "spanId": "0a" * 8,
                                    "name": "x",
                                    "startTimeUnixNano": 0,
                                    "endTimeUnixNano": 1000,
                                    "status": {"code": 2},
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    }
    (span,) = stores.otlp_spans(hex_trace)
    assert (span.span_id, span.error) == ("0a" * 8, True)


def test_loki_streams_flatten_structured_metadata_and_sort_by_time():
    result = [
        {
            "stream": {"service_name": "airflow"},
            "values": [["2000000000", "task b", {"structuredMetadata": {"task_id": "b", "error_message": "x"}}]],
        },
        {
            "stream": {"service_name": "airflow"},
            "values": [["1000000001", "task a", {"structuredMetadata": {"task_id": "a"}, "parsed": {"p": "1"}}]],
        },
    ]
    records = stores.flatten_loki_streams(result)
    assert [r["task_id"] for r in records] == ["a", "b"]
    assert records[0] == {
        "service_name": "airflow",
        "task_id": "a",
        "p": "1",
        "_msg": "task a",
        "_time": "1970-01-01T00:00:01.000000001Z",
    }


def test_durations():
    assert stores.duration_seconds("1h30m") == 5400
    assert stores.duration_seconds("7d") == 604800
    with pytest.raises(ValueError, match="not a duration"):
        stores.duration_seconds("7 days")


def test_json_output_holds_events_span_tree_and_queries():
    found = lookup.RunLookup(
        "etl",
        RUN,
        "airflow",
        "victorialogs at x",
        lookup.timeline_rows(VICTORIALOGS_RECORDS),
        {"ab" * 16: [_span("r", None, "dag_run etl", 0), _span("c", "r", "task t", 1)], "cd" * 16: None},
        "jaeger at y",
        lookup.paste_queries("etl", RUN),
    )
    body = json.loads(lookup.as_json(found))
    assert [e["task_id"] for e in body["events"]] == ["", "extract", "fan_out", "load"]
    assert [(s["name"], s["depth"]) for s in body["traces"]["ab" * 16]] == [("dag_run etl", 0), ("task t", 1)]
    assert body["traces"]["cd" * 16] is None
    assert body["queries"]["run_timeline"]["logsql"].startswith('{service.name="airflow"} dag_id:="etl"')
    assert set(body["queries"]["run_trace"]) == {"jaeger", "traceql"}
    text = lookup.format_lookup(found)
    assert "(not found in the trace store)" in text and "Queries to paste into Grafana:" in text


def test_service_flag_defaults_to_the_configured_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    lookup.add_arguments(parser)
    args = parser.parse_args(["--dag", "etl", "--run", RUN])
    assert args.service is None  # resolved at lookup time: OTEL_SERVICE_NAME, else airflow
    monkeypatch.setenv("OTEL_SERVICE_NAME", "airflow-prod")
    pasted = lookup.paste_queries("etl", RUN)
    assert pasted["run_timeline"]["logsql"].startswith('{service.name="airflow-prod"} dag_id:="etl"')
    assert 'job="airflow-prod"' in pasted["task_counts"]["promql"]
    other = lookup.paste_queries("etl", RUN, service="airflow-dev")
    assert 'resource.service.name = "airflow-dev"' in other["run_trace"]["traceql"]
    assert parser.parse_args(["--dag", "e", "--run", "r", "--service", "airflow-dev"]).service == "airflow-dev"


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("store_flags", "store"),
    [(["--victorialogs-url"], "victorialogs"), (["--logs", "loki", "--loki-url"], "loki")],
)
def test_cli_unreachable_log_store_is_one_line_and_exit_2(capsys, closed_port, store_flags, store):
    url = f"http://127.0.0.1:{closed_port}"
    assert main(["lookup", "--dag", "etl", "--run", RUN, *store_flags, url, "--timeout", "2"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"airflow-otel: error: {store} at {url} is unreachable: [Errno 111] Connection refused\n"


def test_cli_url_from_environment(monkeypatch, capsys, closed_port):
    monkeypatch.setenv("AIRFLOW_OTEL_VICTORIALOGS_URL", f"http://127.0.0.1:{closed_port}/")
    assert main(["lookup", "--dag", "etl", "--run", RUN]) == 2
    assert f"victorialogs at http://127.0.0.1:{closed_port} is unreachable" in capsys.readouterr().err


def test_cli_store_that_does_not_answer_in_time(capsys):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        assert main(["lookup", "--dag", "etl", "--run", RUN, "--victorialogs-url", url, "--timeout", "0.5"]) == 2
    assert capsys.readouterr().err == f"airflow-otel: error: victorialogs at {url} did not answer within 0.5 s\n"


def test_cli_rejects_a_bad_lookback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lookup", "--dag", "etl", "--run", RUN, "--lookback", "a week"])
    assert exit_info.value.code == 2
    assert "not a duration: 'a week'" in capsys.readouterr().err


def test_module_entry_point_runs(closed_port):
    url = f"http://127.0.0.1:{closed_port}"
    proc = subprocess.run(
        [sys.executable, "-m", "otel_plugin", "lookup", "--dag", "d", "--run", "r", "--victorialogs-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "unreachable" in proc.stderr
