"""Dashboard 2, Run lookup (events): pick dag_id and run_id; the run's timeline as a table, its errors with
messages, its events as log lines (each with a link to the trace), and the run's trace.
"""

from __future__ import annotations

from otel_plugin.readback import queries as Q

from .defaults import (
    UID_RUN_LOOKUP,
    VICTORIALOGS,
    Flavour,
    dash,
    dash_model,
    logs_field_variable,
    logs_target,
    new_dashboard,
    service_variable,
    traces_target,
)  # fmt: skip

VARIABLES = ("dag_id", "run_id")
TIMELINE_COLUMNS = ("event", "task_id", "job", "try_number", "map_index", "state", "duration_s", "rows_read",
                    "rows_written", "zero_rows", "checks_failed", "error.type", "hostname")
FAILURE_COLUMNS = tuple(c for c in Q.get("run_failures").spec.columns if c != "_time")  # type: ignore[union-attr]


def _columns(flavour: Flavour, names: tuple[str, ...]) -> list[dash_model.DataTransformerConfig]:
    """Events arrive as log frames (time, line, a JSON ``labels`` field): lift the fields into columns."""
    if flavour.logs is not VICTORIALOGS:
        names = tuple(Q.loki_name(n) for n in names)  # Loki's names for the OTLP attributes
    return [
        dash_model.DataTransformerConfig(id_val="extractFields", options={"source": "labels", "replace": False}),
        dash_model.DataTransformerConfig(id_val="filterFieldsByName", options={
            "include": {"names": ["Time", *names]}}),
    ]  # fmt: skip


def _events_table(flavour: Flavour, title: str, query: str, columns: tuple[str, ...]) -> dash.Panel:
    from grafana_foundation_sdk.builders import table

    panel = (table.Panel().title(title).description(Q.get(query).description).span(24).height(10)
             .datasource(flavour.logs.ref).with_target(logs_target(flavour, query, "A", VARIABLES)))
    for transformation in _columns(flavour, columns):
        panel = panel.with_transformation(transformation)
    return panel


def build(flavour: Flavour) -> dash.Dashboard:
    from grafana_foundation_sdk.builders import logs, table
    from grafana_foundation_sdk.models.common import LogsSortOrder

    runs = Q.render_for_grafana(Q.get("dag_runs"), "logsql", variables=())
    runs_of_dag = Q.render_for_grafana(Q.get("dag_runs"), "logsql", variables=("dag_id",))
    events = (logs.Panel().title("Events (expand one: its trace_id links to the trace)")
              .description(Q.get("run_timeline").description).span(24).height(12).datasource(flavour.logs.ref)
              .with_target(logs_target(flavour, "run_timeline", "A", VARIABLES))
              .show_time(True).enable_log_details(True).sort_order(LogsSortOrder.ASCENDING))
    trace = (table.Panel().title("The run's trace (open it from the Trace ID)")
             .description(Q.get("run_trace").description).span(24).height(5).datasource(flavour.traces.ref)
             .with_target(traces_target(flavour, "run_trace", "A", VARIABLES)))
    return (
        new_dashboard(UID_RUN_LOOKUP, "Airflow: run lookup",
                      f"One DAG run from its events ({flavour.logs.name}) and trace ({flavour.traces.name})")
        .with_variable(service_variable())
        .with_variable(logs_field_variable(flavour, "dag_id", runs))
        .with_variable(logs_field_variable(flavour, "run_id", runs_of_dag))
        .with_panel(_events_table(flavour, "Timeline", "run_timeline", TIMELINE_COLUMNS))
        .with_panel(_events_table(flavour, "Errors", "run_failures", FAILURE_COLUMNS))
        .with_panel(trace)
        .with_panel(events)
    )


