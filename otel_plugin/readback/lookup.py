"""Run lookup: one DAG run's timeline of events, its trace as a tree of spans, and the queries behind them.

Usage::

    python -m otel_plugin lookup --dag etl --run 'manual__2026-11-27T01:02:03.456+00:00'
    python -m otel_plugin lookup --service airflow-prod --dag etl --run RUN   # default: $OTEL_SERVICE_NAME
    airflow-otel lookup --dag etl --run RUN --logs loki --traces tempo --json

Reads events from VictoriaLogs (default) or Loki and spans from Jaeger (default) or Tempo; endpoints from
``--<store>-url`` flags or ``AIRFLOW_OTEL_<STORE>_URL`` (see ``otel_plugin.readback.stores``). Exit code 2 with one
line on stderr when a store cannot be read or the run has no events.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from otel_plugin.core import config, contract
from otel_plugin.readback import queries
from otel_plugin.readback.stores import (
    Jaeger,
    Loki,
    Span,
    StoreError,
    Tempo,
    VictoriaLogs,
    duration_seconds,
    store_url,
)

EVENT_LIMIT = 5000  # Loki's default max_entries_limit_per_query; far above one run's events here
FACT_FIELDS = ("job", *contract.FACT_FIELDS)
PASTE_QUERIES = ("run_timeline", "run_failures", "zero_rows_events", "run_trace")
DAG_QUERIES = ("task_counts", "task_retries", "zero_rows_tasks")  # metrics carry no run_id


class RunNotFound(Exception):
    """The run has no events in the log store. The message is one line."""


def _field(record: Mapping[str, Any], name: str) -> Any:
    """A field by its OTLP name, also under Loki's underscore name (``error.message`` -> ``error_message``)."""
    value = record.get(name)
    return record.get(queries.loki_name(name)) if value is None else value


def _facts(record: Mapping[str, Any]) -> dict[str, str]:
    facts = {name: str(v) for name in FACT_FIELDS if (v := _field(record, name)) not in (None, "")}
    if facts.get("zero_rows", "").lower() != "true":  # only the finding is worth a column
        facts.pop("zero_rows", None)
    prefixes = contract.FIELD_PREFIXES + tuple(queries.loki_name(p) for p in contract.FIELD_PREFIXES)
    facts.update({k: str(v) for k, v in sorted(record.items()) if k.startswith(prefixes)})
    return facts


@dataclass(frozen=True)
class TimelineRow:
    time: str
    event: str
    task_id: str
    try_number: str
    map_index: str
    state: str
    duration_s: str
    error: str
    facts: dict[str, str]
    reconciled: bool


def timeline_rows(records: Iterable[Mapping[str, Any]]) -> list[TimelineRow]:
    """One row per event record, in the order given (the stores return them oldest first)."""
    rows = []
    for r in records:
        error = ": ".join(str(v) for v in (_field(r, "error.type"), _field(r, "error.message")) if v)
        map_index = str(_field(r, "map_index") or "")
        rows.append(
            TimelineRow(
                time=str(r.get("_time", "")),
                event=str(_field(r, "event") or ""),
                task_id=str(_field(r, "task_id") or ""),
                try_number=str(_field(r, "try_number") or ""),
                map_index="" if map_index == "-1" else map_index,
                state=str(_field(r, "state") or ""),
                duration_s=str(_field(r, "duration_s") or ""),
                error=error,
                facts=_facts(r),
                reconciled=str(_field(r, "reconciled")).lower() == "true",
            )
        )
    return rows


def _short_time(iso: str) -> str:
    """``2026-11-27T01:02:03.456789Z`` -> ``2026-11-27 01:02:03.456``."""
    date, _, rest = iso.rstrip("Z").partition("T")
    clock, _, fraction = rest.partition(".")
    return f"{date} {clock}.{(fraction + '000')[:3]}" if rest else iso


def _seconds(text: str) -> str:
    try:
        return f"{float(text):.2f}s"
    except ValueError:
        return text


def format_timeline(rows: list[TimelineRow], error_width: int = 100) -> str:
    table = [("TIME", "TASK", "TRY", "MAP", "STATE", "DURATION", "DETAILS")]
    for row in rows:
        details = [row.error[:error_width]] if row.error else []
        details += [f"{k}={v}" for k, v in row.facts.items()]
        if row.reconciled:
            details.append("(recorded by the scheduler)")
        labels = {contract.EVENT_DAG_RUN: "(dag run)", contract.EVENT_JOB: f"{row.task_id} (job)"}
        task = labels.get(row.event, row.task_id)
        table.append(
            (
                _short_time(row.time),
                task,
                row.try_number,
                row.map_index,
                row.state,
                _seconds(row.duration_s),
                "  ".join(details),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1] for line in table
    ).rstrip()


def span_tree(spans: Iterable[Span]) -> list[tuple[int, Span]]:
    """(depth, span) depth-first, children by start time; a span whose parent is absent is a root."""
    spans = list(spans)
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[Span]] = {}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in ids else None, []).append(s)
    ordered: list[tuple[int, Span]] = []
    stack = [(0, s) for s in sorted(children.get(None, []), key=lambda s: s.start_us, reverse=True)]
    while stack:
        depth, span = stack.pop()
        ordered.append((depth, span))
        kids = sorted(children.get(span.span_id, []), key=lambda s: s.start_us, reverse=True)
        stack.extend((depth + 1, k) for k in kids)
    return ordered


def format_tree(spans: Iterable[Span]) -> str:
    lines = []
    for depth, span in span_tree(spans):
        attrs = span.attributes
        where = [f"try {attrs['try_number']}"] if "try_number" in attrs else []
        if str(attrs.get("map_index", "-1")) != "-1":
            where.append(f"map {attrs['map_index']}")
        status = "ERROR" if span.error else "ok"
        label = f"{'  ' * depth}{span.name}" + (f" ({', '.join(where)})" if where else "")
        lines.append(f"{label:<60} {span.duration_us / 1e6:>9.2f}s  {status}")
    return "\n".join(lines)


def paste_queries(dag_id: str, run_id: str, service: str | None = None) -> dict[str, dict[str, str]]:
    """The catalogue's queries for this run (and its DAG's metrics) in every dialect."""
    found = {
        n: queries.render_all(queries.get(n), dag_id=dag_id, run_id=run_id, service=service) for n in PASTE_QUERIES
    }
    found.update({n: queries.render_all(queries.get(n), dag_id=dag_id, service=service) for n in DAG_QUERIES})
    return found


@dataclass
class RunLookup:
    dag_id: str
    run_id: str
    service: str
    logs_source: str
    events: list[TimelineRow]
    traces: dict[str, list[Span] | None]  # trace id -> spans (None: not in the trace store)
    traces_source: str
    queries: dict[str, dict[str, str]]


def fetch_events(
    dag_id: str, run_id: str, logs: str, url: str | None, timeout: float, lookback: str, service: str
) -> list[dict[str, Any]]:
    q = queries.get("run_timeline")
    if logs == "loki":
        end_ns = time.time_ns()
        start_ns = end_ns - int(duration_seconds(lookback) * 1e9)
        logql = queries.render(q, "logql", dag_id=dag_id, run_id=run_id, service=service)
        return Loki(url, timeout).query_range(logql, start_ns=start_ns, end_ns=end_ns, limit=EVENT_LIMIT)
    logsql = queries.render(q, "logsql", dag_id=dag_id, run_id=run_id, service=service)
    return VictoriaLogs(url, timeout).query(logsql, limit=EVENT_LIMIT)


def fetch_traces(trace_ids: Iterable[str], traces: str, url: str | None, timeout: float) -> dict[str, Any]:
    client = Tempo(url, timeout) if traces == "tempo" else Jaeger(url, timeout)
    return {trace_id: client.trace(trace_id) for trace_id in trace_ids}


def lookup(
    dag_id: str,
    run_id: str,
    *,
    logs: str = "victorialogs",
    traces: str = "jaeger",
    urls: Mapping[str, str | None] | None = None,
    timeout: float = 10.0,
    lookback: str = "7d",
    service: str | None = None,
) -> RunLookup:
    """Everything about one run of ``service`` (default: the configured ``OTEL_SERVICE_NAME``); StoreError when
    a store fails, RunNotFound when the run has no events."""
    urls = urls or {}
    service = service or config.service_name()
    records = fetch_events(dag_id, run_id, logs, urls.get(logs), timeout, lookback, service)
    if not records:
        raise RunNotFound(
            f"no events for DAG {dag_id!r} run {run_id!r} of service {service!r} in {logs} at "
            f"{store_url(logs, urls.get(logs))}"
            + (f" (last {lookback})" if logs == "loki" else "")
        )
    trace_ids = dict.fromkeys(str(t) for r in records if (t := _field(r, "trace_id")))  # first-seen order
    return RunLookup(
        dag_id=dag_id,
        run_id=run_id,
        service=service,
        logs_source=f"{logs} at {store_url(logs, urls.get(logs))}",
        events=timeline_rows(records),
        traces=fetch_traces(trace_ids, traces, urls.get(traces), timeout),
        traces_source=f"{traces} at {store_url(traces, urls.get(traces))}",
        queries=paste_queries(dag_id, run_id, service),
    )


def format_lookup(found: RunLookup) -> str:
    parts = [
        f"DAG {found.dag_id}, run {found.run_id} ({found.service}): {len(found.events)} events from "
        f"{found.logs_source}",
        "",
        format_timeline(found.events),
    ]
    if len(found.events) >= EVENT_LIMIT:
        parts.append(f"(only the first {EVENT_LIMIT} events are shown)")
    for trace_id, spans in found.traces.items():
        parts += ["", f"Trace {trace_id} from {found.traces_source}:"]
        parts.append(format_tree(spans) if spans else "  (not found in the trace store)")
    if not found.traces:
        parts += ["", "The events carry no trace_id: no trace to show."]
    parts += ["", "Queries to paste into Grafana:"]
    for name, by_dialect in found.queries.items():
        parts.append(f"  {name}: {queries.get(name).description}")
        parts += [f"    {dialect:<8} {text}" for dialect, text in by_dialect.items()]
    return "\n".join(parts)


def as_json(found: RunLookup) -> str:
    traces = {}
    for trace_id, spans in found.traces.items():
        traces[trace_id] = (
            None if spans is None else [{**asdict(span), "depth": depth} for depth, span in span_tree(spans)]
        )
    body = {**asdict(found), "traces": traces}
    return json.dumps(body, indent=2, default=str)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dag", required=True, help="the DAG id")
    parser.add_argument("--run", required=True, help="the run id, e.g. manual__2026-11-27T01:02:03+00:00")
    parser.add_argument(
        "--service",
        default=None,
        help="service.name the run's Airflow sends as (default: $OTEL_SERVICE_NAME, else airflow)",
    )
    parser.add_argument("--logs", choices=("victorialogs", "loki"), default="victorialogs", help="log store")
    parser.add_argument("--traces", choices=("jaeger", "tempo"), default="jaeger", help="trace store")
    for store in ("victorialogs", "loki", "jaeger", "tempo"):
        parser.add_argument(f"--{store}-url", help=f"base URL (default: $AIRFLOW_OTEL_{store.upper()}_URL or local)")
    parser.add_argument("--lookback", default="7d", type=_duration, help="how far back Loki searches (default 7d)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per store request (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")


def _duration(text: str) -> str:
    try:
        duration_seconds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def run(args: argparse.Namespace) -> str:
    """The lookup's output as text or JSON; StoreError and RunNotFound propagate (ERRORS)."""
    urls = {s: getattr(args, f"{s}_url") for s in ("victorialogs", "loki", "jaeger", "tempo")}
    found = lookup(
        args.dag,
        args.run,
        logs=args.logs,
        traces=args.traces,
        urls=urls,
        timeout=args.timeout,
        lookback=args.lookback,
        service=args.service,
    )
    return as_json(found) if args.json else format_lookup(found)


ERRORS = (StoreError, RunNotFound)
