"""Shared defaults: the datasources with their fixed uids, the two flavours, and the target and panel helpers
every dashboard uses. A flavour is one ready set: local (Prometheus + VictoriaLogs + Jaeger, the stores that
run here) or grafana-stack (Prometheus + Loki + Tempo).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models.common import DataSourceRef

from otel_plugin.readback import queries as Q

with warnings.catch_warnings():  # the classic dashboard model is the one file provisioning reads
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import loki, prometheus, tempo
    from grafana_foundation_sdk.models import dashboard as dash_model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat
from grafana_foundation_sdk.models.tempo import SearchTableType

__all__ = ["dash", "dash_model"]

TAGS = ["airflow", "opentelemetry"]
TIME_FROM = "now-24h"
REFRESH = "1m"
TRACE_LIMIT = 20
MAX_LOG_LINES = 1000


@dataclass(frozen=True)
class Datasource:
    name: str
    type: str
    uid: str
    url_env: str  # provisioning reads the URL from this environment variable (compose sets it)

    @property
    def ref(self) -> DataSourceRef:
        return DataSourceRef(type_val=self.type, uid=self.uid)


PROMETHEUS = Datasource("Prometheus", "prometheus", "prometheus", "PROMETHEUS_URL")
VICTORIALOGS = Datasource("VictoriaLogs", "victoriametrics-logs-datasource", "victorialogs", "VICTORIALOGS_URL")
JAEGER = Datasource("Jaeger", "jaeger", "jaeger", "JAEGER_URL")
LOKI = Datasource("Loki", "loki", "loki", "LOKI_URL")
TEMPO = Datasource("Tempo", "tempo", "tempo", "TEMPO_URL")


@dataclass(frozen=True)
class Flavour:
    name: str
    logs: Datasource
    traces: Datasource

    @property
    def logs_dialect(self) -> str:
        return "logsql" if self.logs is VICTORIALOGS else "logql"

    @property
    def traces_dialect(self) -> str:
        return "jaeger" if self.traces is JAEGER else "traceql"

    @property
    def datasources(self) -> tuple[Datasource, ...]:
        return (PROMETHEUS, self.logs, self.traces)


LOCAL = Flavour("local", VICTORIALOGS, JAEGER)
GRAFANA_STACK = Flavour("grafana-stack", LOKI, TEMPO)
FLAVOURS = (LOCAL, GRAFANA_STACK)

# Dashboard uids: the same in both flavours (one Grafana runs one flavour), so links between them hold.
UID_OVERVIEW = "airflow-otel-overview"
UID_RUN_LOOKUP = "airflow-otel-run-lookup"
UID_TRACES = "airflow-otel-dag-run-traces"


class RawQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """A target for a datasource the SDK has no model for (VictoriaLogs, Jaeger): its JSON as given."""

    def __init__(self, model: dict[str, Any]) -> None:
        self._model = model

    def build(self) -> cogvariants.Dataquery:
        return UnknownDataquery(dict(self._model))


def new_dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title).uid(uid).description(description).tags(TAGS).time(TIME_FROM, "now")
        .refresh(REFRESH).timezone("utc").editable()
    )  # fmt: skip


# --- targets: one per catalogue query, in the flavour's dialect ---------------------------------------------


def promql_target(name: str, ref_id: str, variables: tuple[str, ...], *, instant: bool, legend: str = "",
                  window: str | None = None) -> prometheus.Dataquery:
    """A Prometheus target; instant queries aggregate over the dashboard's range, range queries per step."""
    query = Q.get(name)
    window = window or ("$__range" if instant else "$__rate_interval")
    expr = Q.render_for_grafana(query, "promql", variables=[v for v in variables if v in query.filters],
                                window=window)
    target = prometheus.Dataquery().ref_id(ref_id).datasource(PROMETHEUS.ref).expr(expr).legend_format(legend)
    target = target.instant() if instant else target.range().exemplar(True)
    return target.format(PromQueryFormat.TABLE if instant else PromQueryFormat.TIME_SERIES)


def logs_target(flavour: Flavour, name: str, ref_id: str, variables: tuple[str, ...]) -> cogbuilder.Builder:
    """A logs target: event records (or, for a count, one instant value per group)."""
    query = Q.get(name)
    expr = Q.render_for_grafana(query, flavour.logs_dialect, variables=variables)
    is_count = isinstance(query.spec, Q.EventCount)
    if flavour.logs is VICTORIALOGS:
        return RawQuery({
            "refId": ref_id, "datasource": flavour.logs.ref.to_json(), "editorMode": "code", "expr": expr,
            "queryType": "stats" if is_count else "instant", "maxLines": MAX_LOG_LINES,
        })  # fmt: skip
    target = loki.Dataquery().ref_id(ref_id).datasource(flavour.logs.ref).expr(expr).editor_mode("code")
    return target.query_type("instant") if is_count else target.query_type("range").max_lines(MAX_LOG_LINES)


def jaeger_logfmt(tags: dict[str, str]) -> str:
    """Jaeger's tag filter as Grafana's Jaeger datasource takes it: logfmt, every value quoted."""
    return " ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in tags.items())


def traces_target(flavour: Flavour, name: str, ref_id: str, variables: tuple[str, ...]) -> cogbuilder.Builder:
    """A trace search (a table of traces, each linking to its trace view)."""
    query = Q.get(name)
    text = Q.render_for_grafana(query, flavour.traces_dialect, variables=variables)
    if flavour.traces is JAEGER:
        params = dict(parse_qsl(text))
        return RawQuery({
            "refId": ref_id, "datasource": flavour.traces.ref.to_json(), "queryType": "search",
            "service": params["service"], "tags": jaeger_logfmt(json.loads(params["tags"])),
            "limit": int(params["limit"]),
        })  # fmt: skip
    return (tempo.Dataquery().ref_id(ref_id).datasource(flavour.traces.ref).query_type("traceql").query(text)
            .limit(TRACE_LIMIT).table_type(SearchTableType.TRACES))


# --- variables -------------------------------------------------------------------------------------------


def service_variable() -> dash.QueryVariable:
    """The service.name of one Airflow environment (``OTEL_SERVICE_NAME``); Prometheus has it as ``job``.

    Every query of every dashboard matches it, so environments sharing the stores stay apart.
    """
    label = Q.PROMETHEUS_SERVICE_LABEL
    metric = Q.DAG_RUN_FINISHED
    return (dash.QueryVariable(Q.SERVICE_VARIABLE).label(Q.SERVICE_VARIABLE).datasource(PROMETHEUS.ref)
            .query(f"label_values({metric}, {label})").refresh(dash_model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash_model.VariableSort.ALPHABETICAL_ASC))  # fmt: skip


def prometheus_label_variable(field: str, metric: str, *, multi: bool, depends_on: tuple[str, ...] = ()
                              ) -> dash.QueryVariable:
    """Values of a label of one of the plugin's metrics in the ``$service`` environment (optionally narrowed
    by earlier variables)."""
    matchers = [f'{Q.PROMETHEUS_SERVICE_LABEL}="${Q.SERVICE_VARIABLE}"'] + [f'{v}=~"${v}"' for v in depends_on]
    selector = f"{metric}{{{', '.join(matchers)}}}"
    variable = (dash.QueryVariable(field).label(field).datasource(PROMETHEUS.ref)
                .query(f"label_values({selector}, {field})").refresh(dash_model.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(dash_model.VariableSort.ALPHABETICAL_ASC))  # fmt: skip
    if multi:
        variable = variable.multi(True).include_all(True).all_value(".*")
    return variable


def logs_field_variable(flavour: Flavour, field: str, base_query: str) -> cogbuilder.Builder:
    """A single-value variable: the field's values in the local flavour (VictoriaLogs field values under
    ``base_query``); a text box in the grafana-stack flavour (Loki lists only index labels, and run ids
    live in structured metadata)."""
    if flavour.logs is not VICTORIALOGS:
        return dash.TextBoxVariable(field).label(field)
    return (dash.QueryVariable(field).label(field).datasource(VICTORIALOGS.ref)
            .query({"type": "fieldValue", "field": field, "query": base_query, "refId": f"{field}-values"})
            .refresh(dash_model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dash_model.VariableSort.ALPHABETICAL_DESC))  # fmt: skip


# --- field overrides -------------------------------------------------------------------------------------


def link_property(title: str, url: str = "", internal: dict[str, Any] | None = None) -> dash_model.DynamicConfigValue:
    """A field's data link: to a URL (another dashboard) or, with ``internal``, to a query in Explore."""
    link: dict[str, Any] = {"title": title, "url": url}
    if internal:
        link["internal"] = internal
    return dash_model.DynamicConfigValue(id_val="links", value=[link])


def events_of_trace_link(flavour: Flavour, value: str) -> dash_model.DynamicConfigValue:
    """A link from a trace id (``value``: a Grafana expression) to the run's events in Explore."""
    expr = Q.render(Q.get("trace_events"), flavour.logs_dialect, trace_id=value, service=Q.ANY_SERVICE)
    query: dict[str, Any] = {"expr": expr, "refId": "A"}
    if flavour.logs is VICTORIALOGS:
        query["queryType"] = "instant"
    return link_property("Events of this run", internal={
        "datasourceUid": flavour.logs.uid, "datasourceName": flavour.logs.name, "query": query})


def to_json(builder: cogbuilder.Builder) -> dict[str, Any]:
    """The built object as plain JSON data (keys sorted later, when written)."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))
