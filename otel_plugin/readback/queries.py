"""The query catalogue: every lookup of the project, defined once as data and rendered into each dialect.

Users, the demo, the run-lookup command, the Grafana dashboards and the tests all take their queries from
here, so the LogQL and TraceQL that Loki and Tempo users paste are the twins of the PromQL, LogsQL and
Jaeger searches proven against the local stack.

Usage::

    from otel_plugin.readback import queries

    q = queries.get("run_timeline")
    queries.render(q, "logsql", dag_id="etl", run_id="manual__2026-11-27T01:02:03.456+00:00")
    queries.render(q, "logql", dag_id="etl", run_id="...")            # Loki 3: structured metadata
    queries.render_for_grafana(q, "logql")                             # $dag_id, $run_id instead of values
    queries.jaeger_search(queries.get("run_trace"), dag_id="etl", run_id="...")  # HTTP API params

Dialects per signal: metrics -> ``promql``; logs -> ``logsql`` (VictoriaLogs) and ``logql`` (Loki 3);
traces -> ``jaeger`` (tag search of Jaeger's ``/api/traces``, rendered as a URL query string) and
``traceql`` (Tempo).

Service: every query matches one ``service.name`` (``OTEL_SERVICE_NAME``; one name per Airflow environment
keeps environments apart in shared stores): LogsQL ``{service.name=...}``, LogQL ``{service_name=...}``,
TraceQL ``resource.service.name``, Jaeger's ``service`` and, in PromQL, the ``job`` label (the Collector's
prometheus exporter sets ``job`` to ``service.name``). ``service=None`` (the default) is this process's
configured name (``otel_plugin.core.config.service_name``); ``ANY_SERVICE`` drops the condition (not for
Jaeger, whose search needs a service). In Grafana the name is the ``$service`` variable.

Filters: each query names the filter fields it takes (``dag_id``, ``run_id``, ``task_id``, ``state``,
``trace_id``). A filter value is a string or a tuple of strings (any of them). Values are escaped for each
dialect; where a matcher is a regex (several values, or a multi-value Grafana variable) the values are
regex-escaped first. Metrics never carry ``run_id`` or ``trace_id`` (bounded cardinality), so metric
queries do not take them.

Grafana variables: ``render_for_grafana`` writes ``$<field>`` instead of values. ``dag_id``, ``task_id``
and ``state`` are multi-value variables (regex matchers, ``in(...)`` in LogsQL), ``run_id`` is a single
value (exact matchers: a run id is full of regex metacharacters such as ``.`` and ``+``), and so is
``trace_id``. Ranges default to ``$__range``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlencode

from otel_plugin.core import config, contract

Signal = Literal["metrics", "logs", "traces"]
Dialect = Literal["promql", "logsql", "logql", "jaeger", "traceql"]

DIALECTS: dict[Signal, tuple[Dialect, ...]] = {
    "metrics": ("promql",),
    "logs": ("logsql", "logql"),
    "traces": ("jaeger", "traceql"),
}
# Filter fields users can set, and whether the dashboards' variable for it is multi-value.
FILTER_FIELDS: dict[str, bool] = {"dag_id": True, "task_id": True, "state": True, "run_id": False, "trace_id": False}
# Filters that identify one run: never metric labels.
RUN_SCOPED = frozenset(f for f in FILTER_FIELDS if contract.is_run_scoped(f))

# Prometheus names of the plugin's metrics (otel_plugin.core.contract).
TASK_FINISHED = contract.TASK_FINISHED.prometheus
TASK_RETRIES = contract.TASK_RETRIES.prometheus
TASK_DURATION = contract.TASK_DURATION.prometheus
TASK_ZERO_ROWS = contract.TASK_ZERO_ROWS.prometheus
DAG_RUN_FINISHED = contract.DAG_RUN_FINISHED.prometheus
DAG_RUN_DURATION = contract.DAG_RUN_DURATION.prometheus
TASK_ROWS = contract.TASK_ROWS.prometheus
TASK_CHECKS = contract.TASK_CHECKS.prometheus
DAG_SUCCESS_DEADLINE = contract.DAG_SUCCESS_DEADLINE.prometheus
DAG_RUN_DEADLINE = contract.DAG_RUN_DEADLINE.prometheus
DAG_FILE_IMPORT_ERROR = contract.DAG_FILE_IMPORT_ERROR.prometheus
SCHEDULER_HEARTBEAT = contract.SCHEDULER_HEARTBEAT.prometheus

FilterValue = str | tuple[str, ...]
ANY_SERVICE = "*"  # ``service=ANY_SERVICE``: match every service.name (e.g. a trace id, unique anyway)
SERVICE_VARIABLE = "service"  # the dashboards' variable holding the service name
PROMETHEUS_SERVICE_LABEL = "job"  # where Prometheus keeps service.name


@dataclass(frozen=True)
class Match:
    """A fixed condition of a query: ``field`` equals one of ``values``."""

    field: str
    values: tuple[str, ...]


def _is(field: str, *values: str) -> Match:
    return Match(field, values)


@dataclass(frozen=True)
class CounterIncrease:
    """``sum by (by) (increase(metric{...}[window]))``, optionally only the series above zero."""

    metric: str
    by: tuple[str, ...]
    where: tuple[Match, ...] = ()
    only_positive: bool = False
    zero_fill: bool = False  # a group with series of the metric but none matching ``where`` counts 0, not no data


@dataclass(frozen=True)
class IncreaseRatio:
    numerator: CounterIncrease
    denominator: CounterIncrease


@dataclass(frozen=True)
class HistogramQuantile:
    """``histogram_quantile(q, sum by (by, le) (increase(<histogram>_bucket{...}[window])))``."""

    quantile: float
    histogram: str
    by: tuple[str, ...]


@dataclass(frozen=True)
class LatestGauge:
    """``max by (by) (last_over_time(gauge{...}[window]))``: a gauge's latest value, kept over the window
    (so a value survives a Collector restart or a sender that died). With ``overdue``, the seconds since a
    Unix-time deadline instead, for deadlines above 0 (0 means none expected):
    ``time() - max by (by) (last_over_time(gauge{...}[window]) > 0)``."""

    metric: str
    by: tuple[str, ...]
    overdue: bool = False


@dataclass(frozen=True)
class EventList:
    """Event records matching ``where``, oldest first; ``columns`` empty means every field."""

    where: tuple[Match, ...] = ()
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventCount:
    """Number of event records per ``by`` group over the window."""

    by: tuple[str, ...]
    where: tuple[Match, ...] = ()


@dataclass(frozen=True)
class TraceSearch:
    """Traces with a span matching ``where`` (and, if ``errors_only``, a span with status error)."""

    where: tuple[Match, ...] = ()
    errors_only: bool = False


Spec = CounterIncrease | IncreaseRatio | HistogramQuantile | LatestGauge | EventList | EventCount | TraceSearch
_SIGNAL_OF_SPEC: dict[type, Signal] = {
    CounterIncrease: "metrics",
    IncreaseRatio: "metrics",
    HistogramQuantile: "metrics",
    LatestGauge: "metrics",
    EventList: "logs",
    EventCount: "logs",
    TraceSearch: "traces",
}


@dataclass(frozen=True)
class Query:
    name: str
    description: str
    filters: tuple[str, ...]
    spec: Spec
    required: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.filters) - FILTER_FIELDS.keys()
        if unknown or not set(self.required) <= set(self.filters):
            raise ValueError(f"query {self.name}: bad filters {self.filters} / required {self.required}")
        if self.signal == "metrics" and RUN_SCOPED & set(self.filters):
            raise ValueError(f"query {self.name}: metrics have no run_id or trace_id label")

    @property
    def signal(self) -> Signal:
        return _SIGNAL_OF_SPEC[type(self.spec)]

    @property
    def dialects(self) -> tuple[Dialect, ...]:
        return DIALECTS[self.signal]


_FAILED = _is("state", *contract.FAILURE_STATES)
_TASK = _is("event", contract.EVENT_TASK)
_FAILURE_COLUMNS = (
    "_time", "dag_id", "run_id", "task_id", "try_number", "map_index", "state", "error.type", "error.message",
)  # fmt: skip

CATALOGUE: tuple[Query, ...] = (
    # Logs (events): VictoriaLogs and Loki.
    Query("run_timeline", "Every event of one DAG run (DAG run and task tries), oldest first",
          ("dag_id", "run_id"), EventList(), required=("dag_id", "run_id")),
    Query("trace_events", "Every event of one DAG-run trace (the run's trace id), oldest first",
          ("trace_id",), EventList(), required=("trace_id",)),
    Query("run_failures", "Failed and up-for-retry task tries, with their error type and message",
          ("dag_id", "run_id", "task_id"), EventList((_TASK, _FAILED), _FAILURE_COLUMNS)),
    Query("zero_rows_events", "Task tries that succeeded while processing 0 rows",
          ("dag_id", "run_id", "task_id"),
          EventList((_TASK, _is("state", "success"), _is("zero_rows", "true")))),
    Query("dag_runs", "Finished DAG runs with state and duration",
          ("dag_id", "state"), EventList((_is("event", contract.EVENT_DAG_RUN),))),
    Query("event_counts", "Task events per DAG, task and state over the window",
          ("dag_id", "run_id", "task_id"), EventCount(("dag_id", "task_id", "state"), (_TASK,))),
    # Metrics: Prometheus.
    Query("task_counts", "Finished task tries per DAG, task and state over the window",
          ("dag_id", "task_id", "state"), CounterIncrease(TASK_FINISHED, ("dag_id", "task_id", "state"))),
    Query("task_failures", "Final task failures per DAG and task over the window (retries excluded)",
          ("dag_id", "task_id"),
          CounterIncrease(TASK_FINISHED, ("dag_id", "task_id"), (_is("state", "failed"),))),
    Query("task_retries", "Task retries per DAG and task over the window",
          ("dag_id", "task_id"), CounterIncrease(TASK_RETRIES, ("dag_id", "task_id"))),
    Query("zero_rows_tasks", "Tasks that succeeded with 0 rows over the window",
          ("dag_id", "task_id"),
          CounterIncrease(TASK_ZERO_ROWS, ("dag_id", "task_id"), only_positive=True)),
    Query("dag_run_counts", "Finished DAG runs per DAG and state over the window",
          ("dag_id", "state"), CounterIncrease(DAG_RUN_FINISHED, ("dag_id", "state"))),
    Query("dag_run_successes", "Successful DAG runs per DAG over the window (0 for a DAG with none)",
          ("dag_id",),
          CounterIncrease(DAG_RUN_FINISHED, ("dag_id",), (_is("state", "success"),), zero_fill=True)),
    Query("dag_failure_ratio", "Share of DAG runs that failed, per DAG, over the window",
          ("dag_id",),
          IncreaseRatio(CounterIncrease(DAG_RUN_FINISHED, ("dag_id",), (_is("state", "failed"),)),
                        CounterIncrease(DAG_RUN_FINISHED, ("dag_id",)))),
    Query("task_duration_p50", "Median task try duration (s) per DAG and task over the window",
          ("dag_id", "task_id", "state"), HistogramQuantile(0.5, TASK_DURATION, ("dag_id", "task_id"))),
    Query("task_duration_p95", "95th percentile task try duration (s) per DAG and task over the window",
          ("dag_id", "task_id", "state"), HistogramQuantile(0.95, TASK_DURATION, ("dag_id", "task_id"))),
    Query("dag_run_duration_p95", "95th percentile DAG-run duration (s) per DAG over the window",
          ("dag_id", "state"), HistogramQuantile(0.95, DAG_RUN_DURATION, ("dag_id",))),
    Query("task_rows", "Rows read and written per DAG and task over the window",
          ("dag_id", "task_id"), CounterIncrease(TASK_ROWS, ("dag_id", "task_id", "direction"))),
    Query("failed_checks", "Failed data checks per DAG, task and check over the window",
          ("dag_id", "task_id"),
          CounterIncrease(TASK_CHECKS, ("dag_id", "task_id", "check"), (_is("result", "failed"),))),
    Query("dag_late_seconds", "Seconds since each DAG should have succeeded again (negative: not yet due)",
          ("dag_id",), LatestGauge(DAG_SUCCESS_DEADLINE, ("dag_id",), overdue=True)),
    Query("dag_run_overdue_seconds", "Seconds since each DAG's oldest running run should have ended",
          ("dag_id",), LatestGauge(DAG_RUN_DEADLINE, ("dag_id",), overdue=True)),
    Query("scheduler_silent_seconds", "Seconds since the scheduler's latest schedule report",
          (), LatestGauge(SCHEDULER_HEARTBEAT, (), overdue=True)),
    Query("dag_file_import_errors", "DAG files failing to import (1) or parsing again (0)",
          (), LatestGauge(DAG_FILE_IMPORT_ERROR, ("filename",))),
    # Traces: Jaeger and Tempo.
    Query("run_trace", "The trace of one DAG run", ("dag_id", "run_id"), TraceSearch(),
          required=("dag_id", "run_id")),
    Query("dag_traces", "Traces of a DAG's runs", ("dag_id",), TraceSearch()),
    Query("failed_dag_traces", "Traces of a DAG's runs with a failed span", ("dag_id",),
          TraceSearch(errors_only=True)),
)  # fmt: skip
QUERIES: dict[str, Query] = {q.name: q for q in CATALOGUE}


def get(name: str) -> Query:
    try:
        return QUERIES[name]
    except KeyError:
        raise KeyError(f"no query named {name!r}; known: {', '.join(QUERIES)}") from None


# ---------------------------------------------------------------------------------------------------------
# Values and Grafana variables


@dataclass(frozen=True)
class _Bound:
    """What a field is matched against: literal values, or a Grafana variable."""

    values: tuple[str, ...] = ()
    variable: str | None = None
    multi: bool = False  # a multi-value variable (rendered as a regex / in())

    @property
    def is_set(self) -> bool:
        return len(self.values) > 1 or self.multi


def _bind_values(query: Query, values: Mapping[str, FilterValue | None]) -> dict[str, _Bound]:
    unknown = set(values) - set(query.filters)
    if unknown:
        raise ValueError(f"query {query.name} takes filters {query.filters}, not {sorted(unknown)}")
    bound = {}
    for field, value in values.items():
        if value is None:
            continue
        items = (value,) if isinstance(value, str) else tuple(value)
        if not items or not all(isinstance(v, str) for v in items):
            raise ValueError(f"filter {field} needs a string or a non-empty tuple of strings, got {value!r}")
        bound[field] = _Bound(items)
    missing = [f for f in query.required if f not in bound]
    if missing:
        raise ValueError(f"query {query.name} needs {', '.join(missing)}")
    return bound


def _bind_variables(query: Query, variables: Iterable[str] | None) -> dict[str, _Bound]:
    names = query.filters if variables is None else tuple(variables)
    unknown = set(names) - set(query.filters)
    if unknown:
        raise ValueError(f"query {query.name} takes filters {query.filters}, not {sorted(unknown)}")
    return {f: _Bound(variable=f, multi=FILTER_FIELDS[f]) for f in names}


def _bind_service(service: str | None) -> _Bound:
    """A literal name, or no condition at all (``ANY_SERVICE``: neither values nor a variable)."""
    if service == ANY_SERVICE:
        return _Bound()
    name = config.service_name() if service is None else service
    if not name:
        raise ValueError("service must be a non-empty name, ANY_SERVICE or None (the configured name)")
    return _Bound((name,))


def _is_any(b: _Bound) -> bool:
    return not b.values and b.variable is None


def _conditions(where: tuple[Match, ...], bound: Mapping[str, _Bound]) -> list[tuple[str, _Bound]]:
    """Fixed conditions first, then the filters, in the query's own field order."""
    return [(m.field, _Bound(m.values)) for m in where] + list(bound.items())


# ---------------------------------------------------------------------------------------------------------
# Escaping


def quote(value: str) -> str:
    """A double-quoted string literal as PromQL, LogsQL, LogQL and TraceQL read it (Go escapes).

    Control characters come out as ``\\n``-style escapes: the stores read them, but Grafana's TraceQL
    editor grammar only knows ``\\"`` and ``\\\\``. Airflow ids never contain control characters.
    """
    return json.dumps(value, ensure_ascii=False)


_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def regex_escape(value: str) -> str:
    """``value`` as an RE2 pattern matching exactly that text."""
    return _RE2_SPECIAL.sub(r"\\\1", value)


def _is_grafana_macro(window: str) -> bool:
    return window.startswith("$")


def _pattern(b: _Bound) -> str:
    return f"${b.variable}" if b.variable else "|".join(regex_escape(v) for v in b.values)


def _literal(b: _Bound) -> str:
    return f'"${b.variable}"' if b.variable else quote(b.values[0])


def _matcher(name: str, b: _Bound, eq: str, re_eq: str, anchored: bool = False) -> str:
    """``name="v"``, or a regex matcher for several values or a multi-value variable."""
    if not b.is_set:
        return f"{name}{eq}{_literal(b)}"
    pattern = f"^(?:{_pattern(b)})$" if anchored else _pattern(b)
    text = f'"{pattern}"' if b.variable else quote(pattern)  # Grafana escapes the variable's values
    return f"{name}{re_eq}{text}"


# ---------------------------------------------------------------------------------------------------------
# Metrics: PromQL


def _selector(metric: str, conditions: list[tuple[str, _Bound]], service: _Bound) -> str:
    """``metric{job="<service>", ...}``: the service first, as it narrows most."""
    lead = [] if _is_any(service) else [(PROMETHEUS_SERVICE_LABEL, service)]
    matchers = ", ".join(_matcher(field, b, "=", "=~") for field, b in lead + conditions)
    return f"{metric}{{{matchers}}}" if matchers else metric


def _promql_increase(c: CounterIncrease, bound: Mapping[str, _Bound], window: str, service: _Bound) -> str:
    by = ", ".join(c.by)
    expr = f"sum by ({by}) (increase({_selector(c.metric, _conditions(c.where, bound), service)}[{window}]))"
    if c.zero_fill:
        every = _selector(c.metric, _conditions((), bound), service)
        expr = f"({expr} or sum by ({by}) (increase({every}[{window}])) * 0)"
    return f"{expr} > 0" if c.only_positive else expr


def _promql(spec: Spec, bound: Mapping[str, _Bound], window: str, service: _Bound) -> str:
    if isinstance(spec, CounterIncrease):
        return _promql_increase(spec, bound, window, service)
    if isinstance(spec, IncreaseRatio):
        num = _promql_increase(spec.numerator, bound, window, service)
        den = _promql_increase(spec.denominator, bound, window, service)
        return f"({num} or {den} * 0) / {den}"  # 0, not no data, for a group with no numerator series
    if isinstance(spec, LatestGauge):
        latest = f"last_over_time({_selector(spec.metric, _conditions((), bound), service)}[{window}])"
        agg = f"max by ({', '.join(spec.by)})" if spec.by else "max"
        return f"time() - {agg} ({latest} > 0)" if spec.overdue else f"{agg} ({latest})"
    assert isinstance(spec, HistogramQuantile)
    buckets = _selector(f"{spec.histogram}_bucket", _conditions((), bound), service)
    by = ", ".join((*spec.by, "le"))
    return f"histogram_quantile({spec.quantile}, sum by ({by}) (increase({buckets}[{window}])))"


# ---------------------------------------------------------------------------------------------------------
# Logs: LogsQL (VictoriaLogs) and LogQL (Loki 3, event fields as structured metadata)


def _logsql_filter(field: str, b: _Bound) -> str:
    if not b.is_set:
        return f"{field}:={_literal(b)}"
    if b.variable:  # the VictoriaLogs datasource expands a multi-value variable inside in() to "a","b"
        return f"{field}:in(${b.variable})"
    return f"{field}:in({','.join(quote(v) for v in b.values)})"


def _logsql(spec: EventList | EventCount, bound: Mapping[str, _Bound], window: str, service: _Bound) -> str:
    parts = ['{service.name=~".+"}' if _is_any(service) else f"{{service.name={_literal(service)}}}"]
    if isinstance(spec, EventCount) and not _is_grafana_macro(window):
        parts.append(f"_time:{window}")  # the VictoriaLogs datasource sends the dashboard's range itself
    parts += [_logsql_filter(field, b) for field, b in _conditions(spec.where, bound)]
    query = " ".join(parts)
    if isinstance(spec, EventCount):
        return f"{query} | stats by ({', '.join(spec.by)}) count() as events"
    if spec.columns:
        query += f" | fields {', '.join(spec.columns)}"
    return f"{query} | sort by (_time)"


def loki_name(field: str) -> str:
    """Loki's name for an OTLP attribute (dots and other non-word characters become underscores)."""
    return re.sub(r"\W", "_", field)


def _logql(spec: EventList | EventCount, bound: Mapping[str, _Bound], window: str, service: _Bound) -> str:
    stream = '{service_name=~".+"}' if _is_any(service) else f"{{service_name={_literal(service)}}}"
    filters = [f" | {_matcher(loki_name(f), b, '=', '=~')}" for f, b in _conditions(spec.where, bound)]
    pipeline = stream + "".join(filters)
    if isinstance(spec, EventCount):
        by = ", ".join(loki_name(f) for f in spec.by)
        return f"sum by ({by}) (count_over_time({pipeline} [{window}]))"
    columns = [loki_name(c) for c in spec.columns if c != "_time"]  # Loki keeps the timestamp anyway
    return f"{pipeline} | keep {', '.join(columns)}" if columns else pipeline


# ---------------------------------------------------------------------------------------------------------
# Traces: Jaeger tag search and TraceQL (Tempo)


def _traceql(spec: TraceSearch, bound: Mapping[str, _Bound], service: _Bound) -> str:
    # Tempo 3 anchors =~ but 2.x searched substrings: anchor explicitly so both match whole values.
    terms = [] if _is_any(service) else [f"resource.service.name = {_literal(service)}"]
    terms += [_matcher(f"span.{f}", b, " = ", " =~ ", anchored=True) for f, b in _conditions(spec.where, bound)]
    if spec.errors_only:
        terms.append("status = error")
    return "{ " + " && ".join(terms) + " }"


def _jaeger_params(
    spec: TraceSearch, bound: Mapping[str, _Bound], lookback: str, limit: int, service: _Bound
) -> dict[str, str]:
    if _is_any(service):
        raise ValueError("Jaeger's trace search needs one service name")
    tags: dict[str, str] = {}
    for field, b in _conditions(spec.where, bound):
        if len(b.values) > 1:  # a Grafana variable goes in as one value: Jaeger panels use single values
            raise ValueError(f"Jaeger's tag search takes one value per tag; {field} has several")
        tags[field] = f"${b.variable}" if b.variable else b.values[0]
    if spec.errors_only:
        tags["error"] = "true"  # Jaeger's tag for a span with OTel status ERROR
    params = {
        "service": f"${service.variable}" if service.variable else service.values[0],
        "tags": json.dumps(tags, ensure_ascii=False, separators=(",", ":")),
        "limit": str(limit),
    }
    if not _is_grafana_macro(lookback):  # Grafana's Jaeger datasource sends the dashboard's range itself
        params["lookback"] = lookback
    return params


# ---------------------------------------------------------------------------------------------------------
# Public rendering API


def _render(query: Query, dialect: str, bound: Mapping[str, _Bound], window: str, service: _Bound) -> str:
    if dialect not in query.dialects:
        raise ValueError(f"query {query.name} ({query.signal}) renders to {query.dialects}, not {dialect!r}")
    spec = query.spec
    if dialect == "promql":
        return _promql(spec, bound, window, service)
    if dialect in ("logsql", "logql"):
        assert isinstance(spec, (EventList, EventCount))
        render_logs = _logsql if dialect == "logsql" else _logql
        return render_logs(spec, bound, window, service)
    assert isinstance(spec, TraceSearch)
    if dialect == "traceql":
        return _traceql(spec, bound, service)
    return urlencode(_jaeger_params(spec, bound, lookback=window, limit=20, service=service))


def render(
    query: Query, dialect: str, *, window: str = "1h", service: str | None = None, **values: FilterValue | None
) -> str:
    """``query`` in ``dialect`` with literal filter values (None values are left out).

    ``window`` is the range of aggregations (PromQL/LogQL ``[window]``, LogsQL ``_time:window``) and
    the lookback of a Jaeger search. Jaeger renders as the query string of ``/api/traces``. ``service``:
    see the module docstring (default: the configured ``OTEL_SERVICE_NAME``).
    """
    return _render(query, dialect, _bind_values(query, values), window, _bind_service(service))


def render_for_grafana(
    query: Query,
    dialect: str,
    *,
    variables: Iterable[str] | None = None,
    window: str = "$__range",
    service: str | None = None,
) -> str:
    """``query`` in ``dialect`` with Grafana template variables (``$dag_id``...) instead of values.

    ``variables`` picks which filters become variables (default: all the query takes). The service is the
    ``$service`` variable unless ``service`` names one (or is ``ANY_SERVICE``).
    """
    bound_service = _Bound(variable=SERVICE_VARIABLE) if service is None else _bind_service(service)
    return _render(query, dialect, _bind_variables(query, variables), window, bound_service)


def render_all(
    query: Query, *, window: str = "1h", service: str | None = None, **values: FilterValue | None
) -> dict[str, str]:
    """The query in each of its dialects, keyed by dialect."""
    return {d: render(query, d, window=window, service=service, **values) for d in query.dialects}


def jaeger_search(
    query: Query,
    *,
    lookback: str = "1h",
    limit: int = 20,
    service: str | None = None,
    **values: FilterValue | None,
) -> dict[str, str]:
    """Parameters of Jaeger's ``GET /api/traces`` for a trace query (``tags`` is a JSON object)."""
    if query.signal != "traces":
        raise ValueError(f"query {query.name} is a {query.signal} query, not a trace search")
    assert isinstance(query.spec, TraceSearch)
    return _jaeger_params(query.spec, _bind_values(query, values), lookback, limit, _bind_service(service))
