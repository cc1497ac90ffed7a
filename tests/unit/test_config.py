"""Configuration precedence and errors (otel_plugin.core.config): AIRFLOW__OTEL_PLUGIN__* over airflow.cfg over
defaults; the standard OTEL_* variables; a bad value disables the plugin with one clear error."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from otel_plugin.airflow import plugin
from otel_plugin.core import config


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith(("OTEL_", "AIRFLOW__OTEL_PLUGIN__")):
            monkeypatch.delenv(key)
    config.reset()
    yield
    config.reset()


@pytest.fixture
def airflow_cfg() -> Iterator[object]:
    """Airflow's real config object, with an [otel_plugin] section as airflow.cfg would give it."""
    conf = config._airflow_conf()
    assert conf is not None
    if not conf.has_section(config.SECTION):
        conf.add_section(config.SECTION)
    yield conf
    conf.remove_section(config.SECTION)


def test_defaults() -> None:
    cfg = config.load()
    assert (cfg.enabled, cfg.flush_budget, cfg.export_timeout, cfg.spool_max_bytes) == (True, 2.0, 5.0, 256 * 2**20)
    assert cfg.endpoints["logs"].url == "http://localhost:4318/v1/logs"
    assert cfg.service_name == "airflow"


def test_env_overrides_airflow_cfg_which_overrides_defaults(airflow_cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    airflow_cfg.set(config.SECTION, "flush_budget", "3.5")
    airflow_cfg.set(config.SECTION, "spool_dir", "/from/cfg")
    assert (config.load().flush_budget, str(config.load().spool_dir)) == (3.5, "/from/cfg")
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET", "0.5")
    assert config.load().flush_budget == 0.5
    assert str(config.load().spool_dir) == "/from/cfg"


def test_standard_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4318/")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces.example/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20abc,x-tenant=a")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "x-tenant=b")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "airflow-prod")
    cfg = config.load()
    assert cfg.endpoints["metrics"].url == "https://otel.example:4318/v1/metrics"
    assert cfg.endpoints["traces"].url == "https://traces.example/v1/traces"  # per-signal: taken as is
    assert cfg.endpoints["metrics"].headers == {"Authorization": "Bearer abc", "x-tenant": "a"}
    assert cfg.endpoints["logs"].headers["x-tenant"] == "b"  # per-signal headers win
    assert cfg.endpoints["logs"].gzip and cfg.service_name == "airflow-prod"
    assert "abc" not in repr(cfg), "headers (credentials) must not appear in the config's repr"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET", "soon", "flush_budget must be a number of seconds, got 'soon'"),
        ("AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET", "600", "flush_budget must be between"),
        # Airflow SIGTERMs the task process 20 s after its terminal state ([core] task_success_overtime)
        ("AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET", "16", "flush_budget = 16 s cannot finish before Airflow's SIGTERM"),
        ("AIRFLOW__OTEL_PLUGIN__ENABLED", "maybe", "enabled must be true or false, got 'maybe'"),
        ("AIRFLOW__OTEL_PLUGIN__SPOOL_MAX_MB", "0", "spool_max_mb must be between"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "'grpc' is not supported; use http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "must start with http:// or https://"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "must be gzip or none"),
    ],
)
def test_a_bad_value_disables_the_plugin_with_one_clear_error(
    variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(config.ConfigError, match=message.replace("(", r"\(")):
        config.load()
    with caplog.at_level(logging.ERROR, logger="otel_plugin.core.config"):
        assert config.get() is None
        assert config.get() is None  # cached: said once
        assert plugin._listeners() == []  # Airflow starts, without the listener
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("otel_plugin disabled: ") and message in errors[0]


def test_the_flush_budget_limit_follows_airflows_task_success_overtime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET", "15")
    assert config.load().flush_budget == 15.0  # 15 s + the 5 s kept for the rest of the exit = 20 s
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET", "30")
    with pytest.raises(config.ConfigError, match="use at most 15 "):
        config.load()
    monkeypatch.setenv("AIRFLOW__CORE__TASK_SUCCESS_OVERTIME", "60")
    assert config.load().flush_budget == 30.0


def test_credentials_in_the_endpoint_become_a_basic_auth_header_and_leave_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://etl:p%40ss@otel.example:4318")
    logs = config.load().endpoints["logs"]
    assert logs.url == "https://otel.example:4318/v1/logs"
    assert logs.headers["Authorization"] == "Basic ZXRsOnBAc3M="  # etl:p@ss
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://etl:hunter2@otel.example")
    with pytest.raises(config.ConfigError) as err:
        config.load()
    assert "hunter2" not in str(err.value)


def test_a_malformed_header_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Bearer supersecrettoken")
    with pytest.raises(config.ConfigError) as err:
        config.load()
    assert "supersecrettoken" not in str(err.value)


def test_disabled_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__ENABLED", "false")
    assert plugin._listeners() == []
