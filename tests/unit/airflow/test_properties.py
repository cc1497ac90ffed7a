"""Property-based tests (hypothesis) of the event and span builders on hostile input: odd and very long ids,
huge and non-UTF-8 messages, exceptions whose str() raises, deep stack traces, attribute values of any
type. Nothing raises, every event fits the stores' limits, and the event's own fields are never lost."""

from __future__ import annotations

import datetime as dt
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_plugin import api
from otel_plugin.airflow import events, listener, traces
from otel_plugin.airflow.model import DagRunInfo, TaskRun
from otel_plugin.core import errors, sanitize
from otel_plugin.core.otel_compat import InMemoryLogRecordExporter
from otel_plugin.core.pipeline import ForcedIdGenerator
from tests.unit.conftest import make_dag_run, make_ti

# Loki: at most 128 structured-metadata entries and 64 KB of them per line (limits_config defaults);
# VictoriaLogs: 256 KB per line (-insert.maxLineSizeBytes) and 1000 fields (-insert.maxFieldsPerLine).
LOKI_MAX_ENTRIES = 128
LOKI_MAX_METADATA_BYTES = 64 * 1024
VL_MAX_LINE_BYTES = 256 * 1024

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=8)
wide = st.integers(0, 200_000).map(lambda n: "\U0001f600" * n)  # 4 bytes each in UTF-8
texts = st.one_of(st.text(), surrogates, wide, st.integers(0, 300_000).map(lambda n: "x" * n))


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("str() raises")


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() raises")


def deep_error(depth: int, message: object) -> BaseException:
    def recurse(n: int) -> None:
        if n == 0:
            raise ValueError(message)
        recurse(n - 1)

    try:
        recurse(depth)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63), st.floats(), texts,
    st.binary(max_size=2000), st.lists(st.integers(), max_size=5), st.dictionaries(st.text(), st.text(), max_size=3),
    st.just(Unprintable()), st.just(dt.datetime.now()),
)
error_inputs = st.one_of(
    st.none(), texts, st.binary(max_size=5000), st.just(UnprintableError()),
    texts.map(RuntimeError), st.binary(max_size=5000).map(ValueError),
    st.tuples(st.integers(0, min(sys.getrecursionlimit() - 100, 800)), texts).map(lambda a: deep_error(*a)),
)
# Airflow's ids are strings; odd ones, None and ints are tolerated. (An id whose str() raises becomes
# '<unprintable ...>' and the event is still sent, see the last test.)
ids = st.one_of(texts, st.none(), st.integers())


def utf8_size(key: str, value: object) -> int:
    return len(key.encode()) + len(str(value).encode())


def check_event(attrs: dict[str, object], event: str) -> None:
    assert len(attrs) <= LOKI_MAX_ENTRIES
    assert sum(utf8_size(k, v) for k, v in attrs.items()) <= LOKI_MAX_METADATA_BYTES
    for key, value in attrs.items():
        key.encode("utf-8")  # raises on lone surrogates
        assert isinstance(value, str | bool | int | float), (key, type(value))
        if isinstance(value, str):
            value.encode("utf-8")
    # Nothing lost: the event's identity is always there, whatever else was dropped.
    assert attrs["event"] == event
    for key in ("dag_id", "run_id", "trace_id", "span_id"):
        assert isinstance(attrs[key], str), key


def encoded_log_size(attrs: dict[str, object]) -> int:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    events.EventWriter(provider.get_logger("t"), "").write(attrs, None, None)
    return len(encode_logs(exporter.get_finished_logs()).SerializeToString())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag_id=ids, task_id=ids, run_id=ids, error=error_inputs,
       facts=st.dictionaries(texts, values, max_size=150), checks=st.dictionaries(st.text(), st.booleans()))
def test_task_event_and_span_never_raise_and_fit_the_stores(dag_id, task_id, run_id, error, facts, checks) -> None:
    ti = make_ti(dag_id=dag_id, task_id=task_id, run_id=run_id, state="failed", hostname=Unprintable())
    run = TaskRun.from_airflow(ti)
    info = errors.describe(error)
    extra = {f"{k}"[:64]: api.attribute_value(v) for k, v in facts.items()}
    attrs = events.task_attributes(run, info, api.Facts(rows_read=1, checks=checks, extra=extra))

    check_event(attrs, "task_instance")
    assert encoded_log_size(attrs) <= VL_MAX_LINE_BYTES
    if info is not None:
        assert attrs["error.type"] == info.type  # the error survives whatever the facts did

    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=ForcedIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traces.emit_task_span(provider.get_tracer("t"), run, attrs, info)
    (span,) = exporter.get_finished_spans()
    assert span.context.span_id == run.span_id
    assert len(span.attributes) <= LOKI_MAX_ENTRIES


@settings(max_examples=40, deadline=None)
@given(dag_id=ids, run_id=ids, message=st.one_of(st.none(), texts))
def test_dag_run_event_never_raises_and_fits_the_stores(dag_id, run_id, message) -> None:
    info = DagRunInfo.from_airflow(make_dag_run(dag_id=dag_id, run_id=run_id), message)
    check_event(events.dag_run_attributes(info), "dag_run")


@settings(max_examples=60, deadline=None)
@given(key=st.one_of(texts, st.just(Unprintable())), value=values)
def test_set_fact_never_raises_into_the_task(key, value) -> None:
    api.begin_task(None, None)
    api.set_fact(key, value)
    (stored,) = api.take_facts().extra.values()
    assert isinstance(stored, str | bool | int | float)


def test_ids_whose_str_raises_never_reach_airflow_and_keep_the_event(captured, caplog) -> None:
    ti = make_ti(dag_id=Unprintable(), state="failed")
    error = UnprintableError()
    assert listener.on_task_instance_failed(previous_state="running", task_instance=ti, error=error) is None
    assert listener.on_dag_run_failed(dag_run=make_dag_run(run_id=Unprintable()), msg="task_failure") is None
    assert not any("no impact on the task" in r.getMessage() for r in caplog.records)
    task, run = captured.events()
    assert task["dag_id"].startswith("<unprintable") and task["state"] == "failed"
    assert run["run_id"].startswith("<unprintable") and run["event"] == "dag_run"


secret_keys = st.tuples(
    st.sampled_from(["", "db_", "PG", "MYSQL_", "AWS_SECRET_", "GITHUB_", "AIRFLOW__CORE__", "X-Amz-", "refresh_",
                     "my.app.", "access_", "Proxy-"]),
    st.sampled_from(["password", "passwd", "pwd", "passphrase", "secret", "token", "api_key", "apikey",
                     "access_key", "private_key", "client_secret", "credentials", "fernet_key", "signature",
                     "account_key", "AccountKey", "secret_key", "Authorization"]),
).map("".join).flatmap(lambda k: st.sampled_from([k, k.upper(), k.lower()]))
secret_values = st.text(st.sampled_from("abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789/+-_.@!%~="),
                        min_size=8, max_size=80).filter(lambda v: v[0] not in "=~")
# Text before the key: none of a value's characters, so that the value can only be found where it was put (a
# fresh CI once generated before="XXXaaaaa" for that very value).
PROSE = "01lIO ,;\n"


@settings(max_examples=300, deadline=None)
@given(key=secret_keys, value=secret_values, form=st.sampled_from(["{k}={v}", "{k}: {v}", "{k} = {v}",
                                                                     '"{k}": "{v}"', "'{k}': '{v}'", "{k}={v}&x=1"]),
       before=st.text(st.sampled_from(PROSE), max_size=30), after=st.text(st.sampled_from(" ,;\n"), max_size=5))
def test_generated_key_value_secrets_are_masked(key, value, form, before, after) -> None:
    text = f"{before} {form.format(k=key, v=value)}{after}"
    assert value not in sanitize.clean_text(text), text


def test_trace_ids_keep_environments_apart_and_the_default_unchanged() -> None:
    from otel_plugin.core import ids

    assert ids.trace_id("etl", "r", 0) == ids.trace_id("etl", "r", 0, service="airflow")
    assert ids.trace_id("etl", "r", 0, service="airflow-prod") != ids.trace_id("etl", "r", 0)
    assert ids.trace_id("etl", "r", 0, service="airflow-prod") != ids.trace_id("etl", "r", 0, service="airflow-dev")
