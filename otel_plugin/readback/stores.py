"""Small read-only clients for the stores our telemetry lands in, on the standard library only.

Prometheus (metrics), VictoriaLogs or Loki (events), Jaeger or Tempo (traces). Every request has a bounded
timeout; every failure (unreachable, timed out, query refused, unreadable answer) raises ``StoreError`` whose
message names the store, its URL and the reason in one line.

Endpoints come from the constructor, else an environment variable, else a local default:

=============  ==============================  =========================
store          environment variable            default
=============  ==============================  =========================
prometheus     AIRFLOW_OTEL_PROMETHEUS_URL     http://127.0.0.1:9090
victorialogs   AIRFLOW_OTEL_VICTORIALOGS_URL   http://127.0.0.1:9428
loki           AIRFLOW_OTEL_LOKI_URL           http://127.0.0.1:3100
jaeger         AIRFLOW_OTEL_JAEGER_URL         http://127.0.0.1:16686
tempo          AIRFLOW_OTEL_TEMPO_URL          http://127.0.0.1:3200
=============  ==============================  =========================

Event records come back as flat dicts of field -> value (``_time`` ISO 8601, ``_msg`` the body); trace
spans as ``Span`` objects, the same for Jaeger and Tempo.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

DEFAULT_URLS = {
    "prometheus": "http://127.0.0.1:9090",
    "victorialogs": "http://127.0.0.1:9428",
    "loki": "http://127.0.0.1:3100",
    "jaeger": "http://127.0.0.1:16686",
    "tempo": "http://127.0.0.1:3200",
}
DEFAULT_TIMEOUT = 10.0


class StoreError(RuntimeError):
    """A store did not answer usefully; the message is one line naming the store, URL and reason."""


def store_url(store: str, override: str | None = None) -> str:
    """The base URL of a store: the override, else ``AIRFLOW_OTEL_<STORE>_URL``, else the local default."""
    url = override or os.environ.get(f"AIRFLOW_OTEL_{store.upper()}_URL") or DEFAULT_URLS[store]
    return url.rstrip("/")


class _Client:
    store = ""

    def __init__(self, url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = store_url(self.store, url)
        self.timeout = timeout

    def _fetch(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        post: bool = False,
        headers: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> bytes | None:
        """The body of GET (or form POST) url+path; None for a 404 when ``missing_ok``."""
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        url = f"{self.url}{path}"
        request = urllib.request.Request(
            url if post or not query else f"{url}?{query}",
            data=query.encode() if post else None,
            headers=dict(headers or {}),
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            if missing_ok and err.code == 404:
                return None
            detail = " ".join(err.read().decode("utf-8", "replace").split())[:300]
            raise StoreError(f"{self.store} at {self.url} refused {path} (HTTP {err.code}): {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)  # urllib wraps a connect timeout in URLError
            if isinstance(err, TimeoutError) or isinstance(reason, TimeoutError):
                raise StoreError(f"{self.store} at {self.url} did not answer within {self.timeout:g} s") from None
            raise StoreError(f"{self.store} at {self.url} is unreachable: {reason}") from None

    def _json(self, path: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        body = self._fetch(path, params, **kwargs)
        if body is None:
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise StoreError(f"{self.store} at {self.url} answered {path} with something not JSON") from None


# --- Prometheus -------------------------------------------------------------------------------------------


class Prometheus(_Client):
    store = "prometheus"

    def _data(self, path: str, params: Mapping[str, Any]) -> Any:
        body = self._json(path, params, post=True)
        if body.get("status") != "success":
            raise StoreError(f"prometheus at {self.url}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query: the result entries (``metric`` labels and ``value`` [t, "v"])."""
        return self._data("/api/v1/query", {"query": expr, "time": at})["result"]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """Range query: the result entries (``metric`` labels and ``values`` [[t, "v"], ...])."""
        return self._data("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})["result"]


# --- Logs: VictoriaLogs and Loki --------------------------------------------------------------------------


class VictoriaLogs(_Client):
    store = "victorialogs"

    def query(
        self, logsql: str, *, limit: int | None = None, start: str | None = None, end: str | None = None
    ) -> list[dict[str, str]]:
        """Records matching a LogsQL query, in the order the query sorts them."""
        body = self._fetch(
            "/select/logsql/query", {"query": logsql, "limit": limit, "start": start, "end": end}, post=True
        )
        assert body is not None
        try:
            return [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        except ValueError:
            raise StoreError(f"victorialogs at {self.url} answered with lines that are not JSON") from None


def _iso_from_ns(ns: int | str) -> str:
    seconds, rest = divmod(int(ns), 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rest:09d}Z"


class Loki(_Client):
    store = "loki"

    def query_range(
        self, logql: str, *, start_ns: int, end_ns: int, limit: int = 5000, direction: str = "forward"
    ) -> list[dict[str, str]]:
        """Log records matching a LogQL log query, oldest first by default.

        Each record flattens the stream labels, structured metadata and parsed labels into one dict,
        plus ``_time`` and ``_msg``. Loki names attributes with underscores (``error_message``).
        """
        params = {"query": logql, "start": start_ns, "end": end_ns, "limit": limit, "direction": direction}
        body = self._json(
            "/loki/api/v1/query_range", params, headers={"X-Loki-Response-Encoding-Flags": "categorize-labels"}
        )
        if body.get("status") != "success":
            raise StoreError(f"loki at {self.url}: {body.get('error') or body}")
        return flatten_loki_streams(body["data"]["result"])


def flatten_loki_streams(result: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Records from a Loki ``streams`` result, in time order (Loki groups them by stream)."""
    records = []
    for stream in result:
        for entry in stream.get("values", []):
            ns, line = entry[0], entry[1]
            extra = entry[2] if len(entry) > 2 else {}
            record = dict(stream.get("stream", {}))
            record.update(extra.get("structuredMetadata") or {})
            record.update(extra.get("parsed") or {})
            record.update({"_time": _iso_from_ns(ns), "_msg": line, "_ns": str(ns)})
            records.append(record)
    records.sort(key=lambda r: int(r.pop("_ns")))
    return records


# --- Traces: Jaeger and Tempo -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    span_id: str  # hex
    parent_id: str | None  # hex, None for a root
    name: str
    start_us: int
    duration_us: int
    error: bool
    attributes: dict[str, Any] = field(default_factory=dict)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def duration_seconds(text: str) -> float:
    """Seconds in a duration such as ``90s``, ``1h30m`` or ``7d``."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 6h, 7d)")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def jaeger_spans(trace: Mapping[str, Any]) -> list[Span]:
    spans = []
    for s in trace.get("spans", []):
        tags = {t["key"]: t.get("value") for t in s.get("tags", [])}
        parents = [r["spanID"] for r in s.get("references", []) if r.get("refType") == "CHILD_OF"]
        error = tags.get("error") in (True, "true") or tags.get("otel.status_code") == "ERROR"
        spans.append(
            Span(
                s["spanID"],
                parents[0] if parents else None,
                s["operationName"],
                int(s["startTime"]),
                int(s["duration"]),
                error,
                tags,
            )
        )
    return spans


class Jaeger(_Client):
    store = "jaeger"

    def trace_json(self, trace_id: str) -> dict[str, Any] | None:
        """One trace (hex id) as Jaeger's HTTP API returns it, or None when Jaeger does not have it."""
        body = self._json(f"/api/traces/{trace_id}", missing_ok=True)
        data = (body or {}).get("data") or []
        return data[0] if data else None

    def trace(self, trace_id: str) -> list[Span] | None:
        """The spans of one trace (hex id), or None when Jaeger does not have it."""
        found = self.trace_json(trace_id)
        return jaeger_spans(found) if found else None

    def search(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        """Traces found by a tag search (``queries.jaeger_search``); ``lookback`` becomes start/end."""
        query = dict(params)
        lookback = query.pop("lookback", None)
        if lookback:
            end_us = int(time.time() * 1_000_000)
            query.update(start=str(end_us - int(duration_seconds(lookback) * 1_000_000)), end=str(end_us))
        return self._json("/api/traces", query).get("data") or []


def _otlp_id(value: str | None) -> str | None:
    """A span or trace id from OTLP JSON: hex as-is (OTLP/JSON), base64 from Tempo's protobuf JSON."""
    if not value:
        return None
    if re.fullmatch(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}", value):
        return value.lower()
    return base64.b64decode(value).hex()


def _otlp_value(value: Mapping[str, Any]) -> Any:
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    return json.dumps(value)


def otlp_spans(trace: Mapping[str, Any]) -> list[Span]:
    """Spans of a trace in OTLP JSON (Tempo's ``batches`` or ``resourceSpans``, with or without ``trace``)."""
    trace = trace.get("trace", trace)
    spans = []
    for batch in trace.get("batches") or trace.get("resourceSpans") or []:
        for scope in batch.get("scopeSpans") or batch.get("instrumentationLibrarySpans") or []:
            for s in scope.get("spans", []):
                start_ns, end_ns = int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"])
                status = (s.get("status") or {}).get("code")
                attributes = {a["key"]: _otlp_value(a.get("value", {})) for a in s.get("attributes", [])}
                span_id = _otlp_id(s["spanId"])
                assert span_id is not None
                spans.append(
                    Span(
                        span_id,
                        _otlp_id(s.get("parentSpanId")),
                        s["name"],
                        start_ns // 1000,
                        (end_ns - start_ns) // 1000,
                        status in (2, "STATUS_CODE_ERROR"),
                        attributes,
                    )
                )
    return spans


class Tempo(_Client):
    store = "tempo"

    def trace(self, trace_id: str) -> list[Span] | None:
        """The spans of one trace (hex id), or None when Tempo does not have it."""
        body = self._json(f"/api/traces/{trace_id}", missing_ok=True)
        return otlp_spans(body) if body else None
