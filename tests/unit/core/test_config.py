"""Configuration precedence and errors (otel_plugin.core.config): AIRFLOW__OTEL_PLUGIN__* over airflow.cfg over
defaults; the standard OTEL_* variables; a bad value disables the plugin with one clear error."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_plugin.airflow import plugin
from otel_plugin.core import config, options


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
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "'http/json' is not supported; use http/protobuf or grpc"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s", "OTEL_EXPORTER_OTLP_TIMEOUT must be milliseconds, got '5s'"),
        ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "10", "must be between 100 and 120000 milliseconds"),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/nonexistent/key.pem", "cannot be read: '/nonexistent/key.pem'"),
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


def test_grpc_protocol_generic_and_per_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    cfg = config.load()
    assert {e.protocol for e in cfg.endpoints.values()} == {"grpc"}
    assert cfg.endpoints["traces"].url == "http://localhost:4317"  # gRPC: no signal path, port 4317
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://otel.example:4318/v1/metrics")
    cfg = config.load()
    assert (cfg.endpoints["logs"].protocol, cfg.endpoints["logs"].url) == ("grpc", "https://otel.example:4317")
    assert (cfg.endpoints["metrics"].protocol, cfg.endpoints["metrics"].url) == (
        "http/protobuf", "https://otel.example:4318/v1/metrics")


def test_timeout_is_milliseconds_per_signal_and_defaults_to_export_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__EXPORT_TIMEOUT", "3")
    assert {e.timeout for e in config.load().endpoints.values()} == {3.0}
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1500")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "250")
    endpoints = config.load().endpoints
    assert (endpoints["logs"].timeout, endpoints["traces"].timeout) == (1.5, 0.25)


def test_the_pipeline_bounds_each_request_by_the_flush_budget(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from otel_plugin.core.pipeline import Pipeline

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "9000")
    monkeypatch.setenv("AIRFLOW__OTEL_PLUGIN__SPOOL_DIR", str(tmp_path))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc")
    pipe = Pipeline(config.load())
    assert {s.timeout for s in pipe.senders.values()} == {2.0}  # flush_budget default
    assert type(pipe.senders["logs"]).__name__ == "GrpcSender" and type(pipe.senders["traces"]).__name__ == "Sender"


def test_client_certificate_and_key_go_together(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(cert))
    with pytest.raises(config.ConfigError, match="go together"):
        config.load()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", str(key))
    with pytest.raises(config.ConfigError, match="go together"):
        config.load()  # the key for traces only: logs and metrics still have a certificate without a key
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(key))
    endpoint = config.load().endpoints["metrics"]
    assert (endpoint.client_certificate, endpoint.client_key) == (str(cert), str(key))


@pytest.mark.parametrize(("value", "enabled"), [("true", False), ("TRUE", False), ("false", True), ("1", True)])
def test_otel_sdk_disabled_turns_the_plugin_off(monkeypatch: pytest.MonkeyPatch, value: str, enabled: bool) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", value)
    assert config.load().enabled is enabled
    assert (plugin._listeners() != []) is enabled  # spec: only "true" (any case) disables


def test_service_name_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod,service.name=from-attrs")
    assert config.load().service_name == "from-attrs"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "airflow-prod")
    assert config.load().service_name == config.service_name() == "airflow-prod"


def test_the_readme_option_table_is_generated_from_the_option_table() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    table = readme.split("<!-- options:begin -->\n", 1)[1].split("\n<!-- options:end -->", 1)[0]
    assert table == options.markdown(), (
        "README.md's option table is stale: paste the output of "
        "`python -c 'from otel_plugin.core import options; print(options.markdown())'`"
    )


def test_every_option_is_read_from_its_variable_and_defaults_to_the_table(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    loaded, built = config.load(airflow_cfg=False), config.PluginConfig()
    assert loaded.spool_dir == built.spool_dir == tmp_path / "otel_spool"
    fields = {"spool_max_mb": "spool_max_bytes"}
    for option in options.OPTIONS:
        name = fields.get(option.key, option.key)
        if option.key in ("spool_dir", "json_path"):
            continue
        scale = 2**20 if option.key == "spool_max_mb" else 1
        assert getattr(loaded, name) == getattr(built, name) == option.kind(option.default) * scale, option.key
    changed = {"enabled": "false", "metrics": "false", "events": "false", "traces": "false", "json_path": "-",
               "flush_budget": "1.5", "export_timeout": "7", "spool_dir": str(tmp_path / "s"), "spool_max_mb": "2",
               "schedule_report_interval": "0"}  # fmt: skip
    assert set(changed) == set(options.BY_KEY)
    for key, value in changed.items():
        monkeypatch.setenv(options.BY_KEY[key].env, value)
    cfg = config.load(airflow_cfg=False)
    assert (cfg.enabled, cfg.metrics, cfg.events, cfg.traces, cfg.json_path, cfg.flush_budget, cfg.export_timeout,
            cfg.spool_dir, cfg.spool_max_bytes, cfg.schedule_report_interval) == (
        False, False, False, False, "-", 1.5, 7.0, tmp_path / "s", 2 * 2**20, 0.0)  # fmt: skip


@pytest.mark.parametrize("option", [o for o in options.OPTIONS if o.kind is float], ids=lambda o: o.key)
def test_a_number_outside_its_range_is_refused_naming_the_key(option, monkeypatch) -> None:
    monkeypatch.setenv(option.env, str(option.maximum * 2 + 1))
    with pytest.raises(config.ConfigError, match=f"{option.key} must be between"):
        config.load(airflow_cfg=False)
