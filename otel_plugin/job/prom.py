"""``push_to_collector``: prometheus_client's ``push_to_gateway``, but exact across concurrent jobs.

Before (Pushgateway)::

    from prometheus_client import CollectorRegistry, Counter, push_to_gateway
    registry = CollectorRegistry()
    rows = Counter("rows_processed", "Rows processed", ["source"], registry=registry)
    rows.labels("s3").inc(5)
    push_to_gateway("pushgateway:9091", job="loader", registry=registry)

After (OTel Collector, through this plugin's job side)::

    from otel_plugin.job import push_to_collector
    push_to_collector(registry, job="loader")

What is sent, from the registry as it is at the call:

- counters: the increase since the previous call from this process (the first call sends the whole
  value) as DELTA sums, so 30 jobs adding 5 read 150 in one series: ``rows_processed_total{dag_id,
  task_id, source}``; a counter that went down (a reset) sends its new value;
- histograms: DELTA histograms (bucket counts, sum and count since the previous call); summaries: their
  ``_sum`` and ``_count`` as a DELTA histogram without buckets;
- gauges (and info, enum/stateset, untyped): their current value, as gauges (last write wins, as before);
- labels: the registry's, plus the grouping key's, plus ``dag_id`` and ``task_id`` from the run context.
  Run-scoped keys (``run_id``, ``try_number``, ``instance``-like ids ...) and ``job``/``instance`` go to the
  job's event instead, with one warning.

The call is bounded (the flush budget, default 2 s) and never raises: what the Collector does not accept
is spooled and sent later. Returns True when the Collector took it, False when it was spooled (or nothing
could be sent).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_plugin.core import contract, process
from otel_plugin.core import custom_metrics as cm
from otel_plugin.core.pipeline import SCOPE
from otel_plugin.core.sanitize import clean_text
from otel_plugin.core.transport import DEADLINE
from otel_plugin.job import runtime

log = logging.getLogger(__name__)

Labels = tuple[tuple[str, str], ...]
_DELTA = AggregationTemporality.DELTA
_SKIPPED_SUFFIXES = ("_created", "_gcount", "_gsum")


class _State:
    """What the previous call sent, per series, so the next one sends only the increase."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[tuple[str, Labels], float] = {}
        self.histograms: dict[tuple[str, Labels], tuple[tuple[float, ...], list[float], float, float]] = {}
        self.last_ns = 0
        self.caps: dict[str, cm.Instrument] = {}


def _push_state() -> _State:
    """push_to_collector's state in this process (a forked child starts from nothing: otel_plugin.core.process)."""
    return process.setdefault("job_push", _State)


def push_to_collector(registry: Any, job: str | None = None, grouping_key: Mapping[str, object] | None = None) -> bool:
    """Send what ``registry`` (a prometheus_client CollectorRegistry) holds; see the module docstring."""
    try:
        return _push(registry, job, grouping_key or {})
    except Exception:
        log.warning("otel_plugin.job: push_to_collector failed; no impact on the job", exc_info=True)
        return False


def _push(registry: Any, job: str | None, grouping_key: Mapping[str, object]) -> bool:
    rt = runtime.get()
    if job:
        rt.name = clean_text(job, 128)
    if rt.pipe is None or "metrics" not in rt.pipe.senders:
        return False
    _state = _push_state()
    base = _labels(grouping_key, rt, "grouping_key")
    if rt.context is not None:
        base.update(rt.context.labels)
    with _state.lock:
        now = time.time_ns()
        start = _state.last_ns or rt.start_ns
        metrics = [m for family in registry.collect() if (m := _convert(family, base, rt, start, now))]
        _state.last_ns = now
    rt.job_span()  # the job appears under its task in the trace even if it records nothing else
    if not metrics:
        return True
    data = MetricsData([ResourceMetrics(rt.pipe.resource, [ScopeMetrics(InstrumentationScope(SCOPE), metrics, "")],
                                        "")])
    payload = encode_metrics(data).SerializeToString()
    budget = rt.pipe.cfg.flush_budget
    DEADLINE.set(time.monotonic() + budget)
    try:
        return rt.pipe.senders["metrics"].send(payload)
    finally:
        DEADLINE.set(None)


def _labels(raw: Mapping[str, object], rt: runtime.JobRuntime, where: str) -> dict[str, str]:
    kept: dict[str, str] = {}
    for key, value in raw.items():
        key = str(key)
        if contract.is_run_scoped(key) or key in ("job", "instance"):
            cm.warn_once(f"push:{where}", key, "push_to_collector: %s key %r is not a metric label here (run-scoped, "
                         "or Prometheus's own); recorded on the job's event instead", where, key)
            rt.set_fact(key, value)
        elif key in contract.CUSTOM_METRIC_LABELS:
            continue  # ours, from the run context
        elif not cm.LABEL.match(key):
            cm.warn_once(f"push:{where}", key, "push_to_collector: %s key %r is not a label name; dropped", where, key)
        else:
            kept[key] = clean_text(value, cm.LABEL_VALUE_CHARS)
    return kept


def _series(name: str, labels: Mapping[str, str], base: Mapping[str, str], rt: runtime.JobRuntime) -> dict[str, str]:
    attrs = {**_labels({k: v for k, v in labels.items() if k not in ("le", "quantile")}, rt, name), **base}
    cap = _push_state().caps.get(name)
    if cap is None:
        cap = _push_state().caps[name] = cm.Instrument(name, "counter", resolve=lambda: None)
    return cap.capped(attrs)


def _convert(family: Any, base: Mapping[str, str], rt: runtime.JobRuntime, start: int, now: int) -> Metric | None:
    name, kind = family.name, family.type
    problem = cm.check_name(name)
    if problem:
        cm.warn_once(name, "invalid", "push_to_collector: metric %r skipped: %s", name, problem)
        return None
    samples = [s for s in family.samples if not s.name.endswith(_SKIPPED_SUFFIXES)]
    description = family.documentation or ""
    if kind == "counter":
        points = []
        for s in samples:
            if not s.name.endswith("_total"):
                continue
            attrs = _series(name, s.labels, base, rt)
            key = (name, tuple(sorted(attrs.items())))
            previous = _push_state().counters.get(key, 0.0)
            delta = s.value - previous if s.value >= previous else s.value  # went down: a reset
            _push_state().counters[key] = s.value
            rt.add_pushed(name, delta)
            points.append(NumberDataPoint(attrs, start, now, _number(delta)))
        return Metric(name, description, "", Sum(points, _DELTA, True)) if points else None
    if kind in ("histogram", "summary"):
        buckets = [p for attrs, series in _histograms(name, samples, base, rt).items()
                   if (p := _histogram_point(name, attrs, series, start, now))]
        return Metric(name, description, "", Histogram(buckets, _DELTA)) if buckets else None
    # gauge, info, stateset, unknown: the value as it is now.
    points = [NumberDataPoint(_series(name, s.labels, base, rt), start, now, _number(s.value)) for s in samples]
    metric_name = samples[0].name if kind == "info" and samples else name  # Info("build") is build_info
    return Metric(metric_name, description, "", Gauge(points)) if points else None


def _histograms(name: str, samples: Iterable[Any], base: Mapping[str, str], rt: runtime.JobRuntime
                ) -> dict[Labels, dict[str, Any]]:
    """Group a histogram family's samples by series: buckets (le -> cumulative count), sum, count."""
    series: dict[Labels, dict[str, Any]] = {}
    for s in samples:
        attrs = tuple(sorted(_series(name, s.labels, base, rt).items()))
        entry = series.setdefault(attrs, {"buckets": {}, "sum": 0.0, "count": 0.0})
        if s.name.endswith("_bucket"):
            entry["buckets"][float(s.labels["le"])] = s.value
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
        elif s.name.endswith("_count"):
            entry["count"] = s.value
    return series


def _histogram_point(name: str, attrs: Labels, series: Mapping[str, Any], start: int, now: int
                     ) -> HistogramDataPoint | None:
    cumulative = sorted(series["buckets"].items())
    bounds = tuple(le for le, _ in cumulative if le != float("inf"))
    counts = [c - (cumulative[i - 1][1] if i else 0.0) for i, (_, c) in enumerate(cumulative)]
    if not cumulative or cumulative[-1][0] != float("inf"):
        counts.append(series["count"] - (cumulative[-1][1] if cumulative else 0.0))  # summary: one bucket
    key = (name, attrs)
    previous = _push_state().histograms.get(key)
    total, count = series["sum"], series["count"]
    _push_state().histograms[key] = (bounds, counts, total, count)
    if previous is not None and previous[0] == bounds and count >= previous[3]:
        counts = [c - p for c, p in zip(counts, previous[1], strict=True)]
        total, count = total - previous[2], count - previous[3]
    return HistogramDataPoint(dict(attrs), start, now, int(count), total, [int(c) for c in counts], list(bounds),
                              None, None)  # type: ignore[arg-type]  # min/max unknown: left unset


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
