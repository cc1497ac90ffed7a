"""Dashboard 3, DAG-run traces: a DAG's runs, those with a failed task, the slowest; every row opens the
trace, and links to the run's events.
"""

from __future__ import annotations

from otel_plugin.readback import queries as Q

from .defaults import (
    UID_TRACES,
    Flavour,
    dash,
    events_of_trace_link,
    new_dashboard,
    prometheus_label_variable,
    service_variable,
    traces_target,
)  # fmt: skip

VARIABLES = ("dag_id",)
TRACE_ID_FIELD = "traceID"  # the trace-id column of Jaeger's and Tempo's search tables


def _search(flavour: Flavour, title: str, query: str, slowest_first: bool = False) -> dash.Panel:
    from grafana_foundation_sdk.builders import common, table

    panel = (table.Panel().title(title).description(Q.get(query).description).span(8 if not slowest_first else 24)
             .height(10).datasource(flavour.traces.ref).with_target(traces_target(flavour, query, "A", VARIABLES))
             .override_by_name(TRACE_ID_FIELD, [events_of_trace_link(flavour, "${__value.raw}")]))
    if slowest_first:
        panel = panel.sort_by([common.TableSortByFieldState().display_name("Duration").desc(True)])
    return panel


def build(flavour: Flavour) -> dash.Dashboard:
    # Trace searches take one DAG at a time (Jaeger's tag search matches single values).
    dag = prometheus_label_variable("dag_id", Q.DAG_RUN_FINISHED, multi=False)
    return (
        new_dashboard(UID_TRACES, "Airflow: DAG-run traces",
                      f"One trace per DAG run ({flavour.traces.name}); each links to the run's events "
                      f"({flavour.logs.name})")
        .with_variable(service_variable())
        .with_variable(dag)
        .with_panel(_search(flavour, "Runs of $dag_id", "dag_traces").span(12))
        .with_panel(_search(flavour, "Runs with a failed task", "failed_dag_traces").span(12))
        .with_panel(_search(flavour, "Slowest runs", "dag_traces", slowest_first=True))
    )
