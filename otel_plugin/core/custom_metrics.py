"""Custom application metrics: any name the user picks, always DELTA, dag_id and task_id added.

Used by the in-task API (``otel_plugin.api.counter``) and the job side (``otel_plugin.job.counter``); both
hand in a *resolver* that says, at each measurement, which meter and run context to use (none: the
measurement is dropped, silently: outside a task nothing is recorded)::

    rows = Instrument("rows_processed", "counter", unit="", description="Rows", resolve=my_resolver)
    rows.add(5, {"source": "s3"})      # rows_processed_total{dag_id=...,task_id=...,source="s3"} += 5

Rules, each with one warning per metric and key (never an exception: a metric must not fail a task):

- names: a letter, then letters, digits, ``_`` or ``.`` (at most 128); the Prometheus name is
  ``prometheus_name()`` (dots to ``_``, unit suffix, ``_total`` for counters), as the Collector writes it;
- units: UCUM units Prometheus knows (``s``, ``ms``, ``By``, ...), ``1``, or an annotation like ``{row}``;
- label keys: Prometheus label names; ``dag_id``, ``task_id``, ``job``, ``instance``, ``le``, ``quantile``
  are ours or Prometheus's and are ignored; run-scoped keys (``run_id``, ``try_number``, ``map_index``, ...)
  are refused and their value goes to the event instead (``note``);
- at most ``CUSTOM_MAX_LABEL_SETS`` distinct label sets per metric and process; further sets are added to
  one set labelled ``otel_metric_overflow="true"`` so totals stay exact.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from otel_plugin.core import contract, process
from otel_plugin.core.otel_compat import create_histogram
from otel_plugin.core.runcontext import RunContext
from otel_plugin.core.sanitize import clean_text

log = logging.getLogger(__name__)

KINDS = ("counter", "histogram", "up_down_counter")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,127}$")
LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ANNOTATION = re.compile(r"^\{[A-Za-z0-9_.\-/ ]{1,63}\}$")
# UCUM units and the word the Collector's Prometheus translation appends for each.
UNIT_SUFFIXES = {
    "": "", "1": "", "%": "percent",
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds",
    "ns": "nanoseconds", "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
}  # fmt: skip
LABEL_VALUE_CHARS = 256


def check_name(name: object) -> str | None:
    """Why ``name`` cannot be a metric name, or None when it can."""
    if not isinstance(name, str) or not NAME.match(name):
        return f"metric name {name!r} must be a letter then letters, digits, '_' or '.' (at most 128)"
    if name.startswith("__"):
        return f"metric name {name!r} may not start with '__' (reserved by Prometheus)"
    return None


def check_unit(unit: object) -> str | None:
    if isinstance(unit, str) and (unit in UNIT_SUFFIXES or ANNOTATION.match(unit)):
        return None
    return (f"unit {unit!r} is not one of {sorted(k for k in UNIT_SUFFIXES if k)} or an annotation such as "
            "'{row}'")


def prometheus_name(name: str, kind: str, unit: str = "") -> str:
    """The series name Prometheus shows (the Collector's translation: tokens joined by ``_``, unit, ``_total``).

    Histograms add ``_bucket``/``_sum``/``_count`` to this; up-down counters are gauges (no ``_total``).
    """
    tokens = [t for t in re.split(r"[^A-Za-z0-9]+", name) if t]
    suffix = UNIT_SUFFIXES.get(unit, "")
    if suffix and suffix not in tokens:
        tokens.append(suffix)
    if kind == "counter":
        tokens = [t for t in tokens if t != "total"] + ["total"]
    return "_".join(tokens)


@dataclass(frozen=True)
class Target:
    """Where a measurement goes: the meter of this process's pipeline and the run it belongs to."""

    meter: Any  # opentelemetry.metrics.Meter
    context: RunContext
    note: Callable[[str, object], None]  # records a refused run-scoped label value on the event


Resolver = Callable[[], "Target | None"]

def warn_once(metric: str, what: str, message: str, *args: object) -> None:
    warned, key = process.current().warned, ("custom", metric, what)
    if key in warned:  # two threads may both warn once: harmless, and no lock to hold
        return
    warned.add(key)
    log.warning("otel_plugin: " + message, *args)


class Instrument:
    """A user metric; measurements outside a run context are dropped. Thread-safe, fork-safe."""

    def __init__(self, name: str, kind: str, unit: str = "", description: str = "", *,
                 resolve: Resolver, max_label_sets: int = contract.CUSTOM_MAX_LABEL_SETS,
                 buckets: tuple[float, ...] | None = None) -> None:
        self.name, self.kind, self.unit, self.description = name, kind, unit, description
        self.buckets = buckets
        self.max_label_sets = max_label_sets
        self._resolve = resolve
        self.problem = check_name(name) or check_unit(unit) or (None if kind in KINDS else f"kind {kind!r}")
        if self.problem:
            warn_once(str(name), "invalid", "metric %r not recorded: %s", name, self.problem)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._label_sets: set[tuple[tuple[str, str], ...]] = set()
        self._sdk: dict[int, Any] = {}  # id(meter) -> SDK instrument
        self.totals: dict[tuple[tuple[str, str], ...], float] = {}  # this process's sums, per label set

    @property
    def prometheus(self) -> str:
        return prometheus_name(self.name, self.kind, self.unit)

    def add(self, value: float, labels: Mapping[str, object] | None = None) -> None:
        """Counter and up-down counter: add ``value`` (a counter refuses negative values)."""
        self._measure(value, labels)

    def record(self, value: float, labels: Mapping[str, object] | None = None) -> None:
        """Histogram: record one observation."""
        self._measure(value, labels)

    def _measure(self, value: object, labels: Mapping[str, object] | None) -> None:
        try:
            if self.problem:
                return
            if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
                warn_once(self.name, "value", "metric %r: value must be a number, got %s; ignored",
                          self.name, type(value).__name__)
                return
            if self.kind == "counter" and value < 0:
                warn_once(self.name, "negative", "metric %r is a counter: negative value ignored", self.name)
                return
            target = self._resolve()
            if target is None:
                return
            attributes = self._attributes(labels or {}, target)
            instrument = self._instrument(target.meter)
            key = tuple(sorted(attributes.items()))
            with self._lock:
                self.totals[key] = self.totals.get(key, 0) + value
            if self.kind == "histogram":
                instrument.record(value, attributes)
            else:
                instrument.add(value, attributes)
        except Exception:  # never into the user's code
            log.warning("otel_plugin: metric %r not recorded; no impact on the task", self.name, exc_info=True)

    def _attributes(self, labels: Mapping[str, object], target: Target) -> dict[str, str]:
        attributes: dict[str, str] = {}
        for raw_key, raw_value in labels.items():
            key = str(raw_key)
            if contract.is_run_scoped(key):
                warn_once(self.name, key, "metric %r: label %r identifies one run, try or process and would "
                          "make a series per run; recorded on the event instead", self.name, key)
                target.note(key, raw_value)
            elif key in contract.RESERVED_LABELS:
                warn_once(self.name, key, "metric %r: label %r is set by the plugin or Prometheus; yours is "
                          "ignored", self.name, key)
            elif not LABEL.match(key) or key.startswith("__"):
                warn_once(self.name, key, "metric %r: label %r is not a Prometheus label name "
                          "([A-Za-z_][A-Za-z0-9_]*); dropped", self.name, key)
            else:
                attributes[key] = clean_text(raw_value, LABEL_VALUE_CHARS)
        attributes.update(target.context.labels)
        return self.capped(attributes)

    def capped(self, attributes: dict[str, str]) -> dict[str, str]:
        key = tuple(sorted(attributes.items()))
        with self._lock:
            if self._pid != os.getpid():  # a forked child counts its own label sets
                self._pid, self._label_sets, self.totals = os.getpid(), set(), {}
            if key in self._label_sets:
                return attributes
            if len(self._label_sets) < self.max_label_sets:
                self._label_sets.add(key)
                return attributes
        warn_once(self.name, "cap", "metric %r reached %d label sets in this process; further sets are added "
                  "to one set with %s=\"true\"", self.name, self.max_label_sets, contract.OVERFLOW_LABEL)
        ours = {k: attributes[k] for k in contract.CUSTOM_METRIC_LABELS if k in attributes}
        return {**ours, contract.OVERFLOW_LABEL: "true"}

    def _instrument(self, meter: Any) -> Any:
        found = self._sdk.get(id(meter))
        if found is not None:
            return found
        with self._lock:
            if id(meter) not in self._sdk:
                if self.kind == "counter":
                    made = meter.create_counter(self.name, unit=self.unit, description=self.description)
                elif self.kind == "up_down_counter":
                    made = meter.create_up_down_counter(self.name, unit=self.unit, description=self.description)
                else:
                    made = create_histogram(meter, self.name, unit=self.unit, description=self.description,
                                            buckets=self.buckets)
                self._sdk[id(meter)] = made
            return self._sdk[id(meter)]


class Registry:
    """One Instrument per name per process: asking again returns the same one (a kind clash warns)."""

    def __init__(self, resolve: Resolver) -> None:
        self._resolve = resolve
        self._instruments: dict[str, Instrument] = {}
        self._lock = threading.Lock()

    def get(self, name: str, kind: str, unit: str = "", description: str = "",
            buckets: tuple[float, ...] | None = None) -> Instrument:
        with self._lock:
            found = self._instruments.get(name)
            if found is None:
                found = Instrument(name, kind, unit, description, resolve=self._resolve, buckets=buckets)
                self._instruments[name] = found
            elif found.kind != kind or found.unit != unit:
                warn_once(name, "clash", "metric %r already exists as a %s with unit %r; using that one",
                          name, found.kind, found.unit)
            return found

    def totals(self) -> dict[str, float]:
        """Counter totals of this process, summed over label sets (the job's event shows them)."""
        return {name: sum(inst.totals.values()) for name, inst in self._instruments.items()
                if inst.kind == "counter" and inst.totals}
