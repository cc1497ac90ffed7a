"""Golden telemetry of one reference run: every event, span and metric point the plugin emits for it, compared
with tests/golden/reference_run.json. A change to what users see in their stores shows up here as a diff.

The file is written by the test, never by hand: review the diff, then
    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/airflow/test_golden.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from otel_plugin import api
from otel_plugin.airflow import listener
from tests.unit.conftest import T0, Captured, make_dag_run, make_ti

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "reference_run.json"
RUN = "scheduled__2026-11-27T00:00:00+00:00"


def reference_run() -> None:
    """extract succeeds with facts; load fails once (retry), then succeeds; the DAG run succeeds."""
    def at(seconds: float) -> dt.datetime:
        return T0 + dt.timedelta(seconds=seconds)

    common = {"dag_id": "golden", "run_id": RUN, "max_tries": 2}
    extract = make_ti(**common, task_id="extract", start_date=at(1), end_date=at(4))
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(
        **common, task_id="extract", state="running", start_date=at(1), end_date=None))
    api.record_rows(read=120, written=118)
    api.record_check("no_null_ids", passed=True)
    api.set_fact("source", "s3://bucket/2026-11-27.csv")
    listener.on_task_instance_success(previous_state="running", task_instance=extract)

    first = make_ti(**common, task_id="load", state="up_for_retry", start_date=at(5), end_date=at(6))
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(
        **common, task_id="load", state="running", start_date=at(5), end_date=None))
    listener.on_task_instance_failed(previous_state="running", task_instance=first,
                                     error=ConnectionError("warehouse timed out"))
    second = make_ti(**common, task_id="load", try_number=2, start_date=at(8), end_date=at(9.5))
    listener.on_task_instance_running(previous_state="queued", task_instance=make_ti(
        **common, task_id="load", try_number=2, state="running", start_date=at(8), end_date=None))
    api.record_rows(written=118)
    listener.on_task_instance_success(previous_state="running", task_instance=second)

    listener.on_dag_run_success(dag_run=make_dag_run([extract, second], dag_id="golden", run_id=RUN,
                                                     run_type="scheduled", end_date=at(10)), msg="success")


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def telemetry(captured: Captured) -> dict[str, Any]:
    captured.pipe.logger_provider.force_flush()
    events = [
        {"severity": r.log_record.severity_text, "body": r.log_record.body, "time_ns": r.log_record.timestamp,
         "attributes": {k: _plain(v) for k, v in sorted(r.log_record.attributes.items())}}
        for r in captured.log_exporter.get_finished_logs()
    ]
    spans = [
        {"name": s.name, "kind": s.kind.name, "trace_id": f"{s.context.trace_id:032x}",
         "span_id": f"{s.context.span_id:016x}", "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
         "start_ns": s.start_time, "end_ns": s.end_time, "status": s.status.status_code.name,
         "status_description": s.status.description,
         "attributes": {k: _plain(v) for k, v in sorted(s.attributes.items())},
         "events": [e.name for e in s.events]}
        for s in sorted(captured.spans(), key=lambda s: (s.start_time, s.name))
    ]
    captured.reader.collect()
    points: list[dict[str, Any]] = []
    for data in captured.reader.collected:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for p in metric.data.data_points:
                        value = ({"count": p.count, "sum": p.sum, "bucket_counts": list(p.bucket_counts)}
                                 if hasattr(p, "bucket_counts") else p.value)
                        points.append({"name": metric.name, "unit": metric.unit,
                                       "attributes": dict(sorted(p.attributes.items())), "value": value})
    points.sort(key=lambda p: (p["name"], json.dumps(p["attributes"], sort_keys=True)))
    return {"events": events, "spans": spans, "metrics": points}


def test_reference_run_matches_the_golden_file(captured: Captured) -> None:
    reference_run()
    got = json.loads(json.dumps(telemetry(captured), sort_keys=True, default=str))
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    want = json.loads(GOLDEN.read_text())
    for part in ("events", "spans", "metrics"):
        assert got[part] == want[part], (
            f"the {part} of the reference run changed; if that is intended, review and regenerate with "
            "UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/airflow/test_golden.py"
        )
