"""Dashboard 1, Operations overview (Prometheus): runs, failures, retries, durations, failure ratio, 0-row tasks.

The same in both flavours: metrics live in Prometheus either way.
"""

from __future__ import annotations

from otel_plugin.readback import queries as Q

from .defaults import (
    UID_OVERVIEW,
    Flavour,
    dash,
    dash_model,
    new_dashboard,
    prometheus_label_variable,
    promql_target,
    service_variable,
)

VARIABLES = ("dag_id", "task_id")
_BY_TASK = "{{dag_id}} / {{task_id}}"


def _table(title: str, description: str, query: str) -> dash.Panel:
    from grafana_foundation_sdk.builders import common, table

    return (table.Panel().title(title).description(description).span(8).height(8)
            .with_target(promql_target(query, "A", VARIABLES, instant=True))
            .sort_by([common.TableSortByFieldState().display_name("Value").desc(True)])
            .with_transformation(dash_model.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"Time": True}})))  # fmt: skip


def _timeseries(title: str, description: str, unit: str, *targets: tuple[str, str]) -> dash.Panel:
    from grafana_foundation_sdk.builders import common, timeseries
    from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement

    legend = (common.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.TABLE)
              .placement(LegendPlacement.BOTTOM).calcs(["max", "lastNotNull"]))
    panel = (timeseries.Panel().title(title).description(description).unit(unit).span(12).height(8)
             .legend(legend))
    for ref, (query, legend) in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(promql_target(query, ref, VARIABLES, instant=False, legend=legend))
    return panel


def build(flavour: Flavour) -> dash.Dashboard:
    from grafana_foundation_sdk.builders import bargauge

    ratio = (bargauge.Panel().title("DAG failure ratio").description(Q.get("dag_failure_ratio").description)
             .unit("percentunit").min(0).max(1).span(12).height(8)
             .with_target(promql_target("dag_failure_ratio", "A", VARIABLES, instant=True, legend="{{dag_id}}")))
    return (
        new_dashboard(UID_OVERVIEW, "Airflow: operations overview",
                      "Task and DAG-run outcomes from the plugin's delta metrics (Prometheus)")
        .with_variable(service_variable())
        .with_variable(prometheus_label_variable("dag_id", Q.DAG_RUN_FINISHED, multi=True))
        .with_variable(prometheus_label_variable("task_id", Q.TASK_FINISHED, multi=True, depends_on=("dag_id",)))
        .with_row(dash.Row("Runs and failures"))
        .with_panel(_timeseries("DAG runs by state", Q.get("dag_run_counts").description, "short",
                                ("dag_run_counts", "{{dag_id}} {{state}}")))
        .with_panel(ratio)
        .with_panel(_table("Final task failures", Q.get("task_failures").description, "task_failures"))
        .with_panel(_table("Retries", Q.get("task_retries").description, "task_retries"))
        .with_panel(_table("Succeeded with 0 rows", Q.get("zero_rows_tasks").description, "zero_rows_tasks"))
        .with_panel(_timeseries("Task tries by state", Q.get("task_counts").description, "short",
                                ("task_counts", "{{dag_id}} / {{task_id}} {{state}}")))
        .with_panel(_table("Failed data checks", Q.get("failed_checks").description, "failed_checks"))
        .with_row(dash.Row("Durations and volumes"))
        .with_panel(_timeseries("Task duration p50 / p95", "Per DAG and task; exemplars link to traces", "s",
                                ("task_duration_p50", f"p50 {_BY_TASK}"), ("task_duration_p95", f"p95 {_BY_TASK}")))
        .with_panel(_timeseries("DAG-run duration p95", Q.get("dag_run_duration_p95").description, "s",
                                ("dag_run_duration_p95", "p95 {{dag_id}}")))
        .with_panel(_timeseries("Rows read and written", Q.get("task_rows").description, "short",
                                ("task_rows", f"{_BY_TASK} {{{{direction}}}}")))
    )
