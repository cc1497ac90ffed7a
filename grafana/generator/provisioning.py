"""Provisioning of each flavour: datasources (fixed uids, linked both ways) and the dashboard provider.

Links: an event's trace_id opens its trace (derived field); a span opens the run's events (tracesToLogsV2,
by trace id); a Prometheus exemplar's trace_id opens the trace (exemplarTraceIdDestinations).
"""

from __future__ import annotations

from typing import Any

from otel_plugin.readback import queries as Q

from .defaults import JAEGER, MAX_LOG_LINES, PROMETHEUS, VICTORIALOGS, Datasource, Flavour

DASHBOARDS_IN_CONTAINER = "/var/lib/grafana/dashboards"  # compose mounts grafana/dashboards here
DASHBOARD_FOLDER = "Airflow"
DASHBOARD_FOLDER_UID = "airflow-otel"
TRACE_ID_FIELD = "trace_id"  # the events' trace id field (otel_plugin.core.contract.COMMON_FIELDS)
# Spans are emitted at the end of their task / run; the events of a run lie within the trace's time, give or
# take the scheduling gap.
SPAN_TIME_SHIFT = "1h"


def _datasource(ds: Datasource, json_data: dict[str, Any], default: bool = False) -> dict[str, Any]:
    return {"name": ds.name, "type": ds.type, "uid": ds.uid, "access": "proxy", "url": f"${ds.url_env}",
            "isDefault": default, "editable": False, "jsonData": json_data}


def datasources(flavour: Flavour) -> dict[str, Any]:
    logs, traces = flavour.logs, flavour.traces
    to_trace = {"name": TRACE_ID_FIELD, "matcherType": "label", "matcherRegex": TRACE_ID_FIELD,
                "url": "${__value.raw}", "urlDisplayLabel": "Trace", "datasourceUid": traces.uid}
    # The VictoriaLogs plugin reads maxLines as a string, Loki as a number.
    max_lines = str(MAX_LOG_LINES) if logs is VICTORIALOGS else MAX_LOG_LINES
    logs_data: dict[str, Any] = {"derivedFields": [to_trace], "maxLines": max_lines}
    # Any service: a trace id is unique, and a trace joining Airflow's own spans may cross service names.
    events_of_trace = Q.render(
        Q.get("trace_events"), flavour.logs_dialect, trace_id="${__trace.traceId}", service=Q.ANY_SERVICE
    )
    traces_data: dict[str, Any] = {"tracesToLogsV2": {
        "datasourceUid": logs.uid, "customQuery": True, "query": events_of_trace, "filterByTraceID": False,
        "spanStartTimeShift": f"-{SPAN_TIME_SHIFT}", "spanEndTimeShift": SPAN_TIME_SHIFT}}
    if traces is not JAEGER:
        traces_data["nodeGraph"] = {"enabled": True}
    prometheus_data = {"httpMethod": "POST", "exemplarTraceIdDestinations": [
        {"name": TRACE_ID_FIELD, "datasourceUid": traces.uid, "urlDisplayLabel": "Trace"}]}
    return {"apiVersion": 1, "datasources": [
        _datasource(PROMETHEUS, prometheus_data, default=True),
        _datasource(logs, logs_data),
        _datasource(traces, traces_data),
    ]}  # fmt: skip


def dashboard_provider(flavour: Flavour) -> dict[str, Any]:
    return {"apiVersion": 1, "providers": [{
        "name": f"airflow-otel-{flavour.name}", "orgId": 1, "type": "file", "folder": DASHBOARD_FOLDER,
        "folderUid": DASHBOARD_FOLDER_UID, "disableDeletion": True, "allowUiUpdates": False,
        "updateIntervalSeconds": 60, "options": {"path": f"{DASHBOARDS_IN_CONTAINER}/{flavour.name}"},
    }]}  # fmt: skip
