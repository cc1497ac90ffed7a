"""Plugin configuration: an ``[otel_plugin]`` section in airflow.cfg plus the standard ``OTEL_*`` variables.

The section's keys, defaults and meanings are one table, ``otel_plugin.core.options.OPTIONS`` (the README's
table is generated from it); every key can be overridden with ``AIRFLOW__OTEL_PLUGIN__<KEY>`` (Airflow's rule).

Standard OpenTelemetry variables, each also per signal (``OTEL_EXPORTER_OTLP_{METRICS,LOGS,TRACES}_*``, which
wins): ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf``, the default, or ``grpc``),
``OTEL_EXPORTER_OTLP_ENDPOINT`` (default ``http://localhost:4318``, or ``http://localhost:4317`` for gRPC; the
generic HTTP endpoint gets the signal path appended, a per-signal one is taken as is),
``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_EXPORTER_OTLP_COMPRESSION`` (``gzip`` or ``none``),
``OTEL_EXPORTER_OTLP_TIMEOUT`` (milliseconds; default: ``export_timeout`` above),
``OTEL_EXPORTER_OTLP_CERTIFICATE`` (CA bundle), ``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`` and
``OTEL_EXPORTER_OTLP_CLIENT_KEY`` (mTLS), ``OTEL_EXPORTER_OTLP_INSECURE`` (gRPC endpoint without a scheme);
``OTEL_SDK_DISABLED=true`` disables the plugin (it records nothing); ``OTEL_SERVICE_NAME`` (default
``airflow``, else ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) and ``OTEL_RESOURCE_ATTRIBUTES``.
"""

from __future__ import annotations

import base64
import logging
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from otel_plugin.core import contract, process
from otel_plugin.core.options import BY_KEY, SECTION, default
from otel_plugin.core.process import UNSET

log = logging.getLogger(__name__)

_READ_AIRFLOW_CFG: ContextVar[bool] = ContextVar("otel_plugin_read_airflow_cfg", default=True)
SIGNAL_PATHS = {"metrics": "v1/metrics", "logs": "v1/logs", "traces": "v1/traces"}
# Airflow's supervisor SIGTERMs a task process [core] task_success_overtime seconds after its terminal
# state. The exit flushes share one flush_budget; this much is kept for the rest of the exit (other
# listeners, interpreter teardown: up to 3.1 s measured on a loaded 2-core machine, docs/reliability.md).
EXIT_RESERVE_S = 5.0
AIRFLOW_OVERTIME_DEFAULT_S = 20.0
PROTOCOLS = ("http/protobuf", "grpc")
DEFAULT_ENDPOINTS = {"http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # may hold credentials
    gzip: bool = False
    certificate: str | None = None  # CA bundle that verifies the server
    client_certificate: str | None = None  # mTLS: our certificate (PEM) and its key
    client_key: str | None = None
    protocol: str = "http/protobuf"
    timeout: float = 5.0  # seconds per request: OTEL_EXPORTER_OTLP_TIMEOUT, else [otel_plugin] export_timeout
    insecure: bool = False  # gRPC only: plaintext for an endpoint without a scheme


def _default_spool_dir() -> Path:
    home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
    return Path(home) / "otel_spool"


@dataclass(frozen=True)
class PluginConfig:
    enabled: bool = bool(default("enabled"))
    metrics: bool = bool(default("metrics"))
    events: bool = bool(default("events"))
    traces: bool = bool(default("traces"))
    json_path: str = str(default("json_path"))
    flush_budget: float = float(default("flush_budget"))
    export_timeout: float = float(default("export_timeout"))
    spool_dir: Path = field(default_factory=_default_spool_dir)
    spool_max_bytes: int = int(float(default("spool_max_mb")) * 2**20)
    service_name: str = contract.SERVICE_NAME
    schedule_report_interval: float = float(default("schedule_report_interval"))
    endpoints: dict[str, Endpoint] = field(default_factory=dict)


def _airflow_conf():
    if not _READ_AIRFLOW_CFG.get():
        return None
    for module in ("airflow.sdk.configuration", "airflow.configuration"):
        try:
            return __import__(module, fromlist=["conf"]).conf
        except Exception:
            continue
    return None


def _raw(key: str) -> str | None:
    """The section value: env override first (as Airflow does), then airflow.cfg."""
    env = os.environ.get(f"AIRFLOW__{SECTION.upper()}__{key.upper()}")
    if env is not None:
        return env
    conf = _airflow_conf()
    if conf is None:
        return None
    try:
        return conf.get(SECTION, key, fallback=None)
    except Exception:
        return None


def _bool(key: str) -> bool:
    raw = _raw(key)
    if raw is None or raw.strip() == "":
        return bool(BY_KEY[key].default)
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on", "t", "y"):
        return True
    if value in ("0", "false", "no", "off", "f", "n"):
        return False
    raise ConfigError(f"[{SECTION}] {key} must be true or false, got {raw!r}")


def _float(key: str) -> float:
    option = BY_KEY[key]
    raw = _raw(key)
    if raw is None or raw.strip() == "":
        return float(option.default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"[{SECTION}] {key} must be a number of {option.unit}, got {raw!r}") from None
    if not option.minimum <= value <= option.maximum:
        raise ConfigError(f"[{SECTION}] {key} must be between {option.minimum:g} and {option.maximum:g}, got {raw!r}")
    return value


def redact_url(url: str) -> str:
    """``url`` without the ``user:password@`` part: what logs and error messages may show."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    except ValueError:
        return "<unparsable URL>"


def _credentials_to_header(url: str, headers: dict[str, str]) -> str:
    """Move ``user:password@`` out of the URL into an ``Authorization: Basic`` header (as the requests
    library, behind the OTel SDK's exporter, does): urllib cannot send it, and a URL ends up in logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    if not any(key.lower() == "authorization" for key in headers):
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return redact_url(url)


def parse_headers(raw: str) -> dict[str, str]:
    """W3C-baggage-style ``key=value,key2=value2`` with percent-encoding, as the OTel spec defines."""
    headers = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            # Do not echo the item: it may hold a credential.
            raise ConfigError("OTEL_EXPORTER_OTLP_HEADERS has an entry without 'key=value'")
        headers[unquote(key.strip())] = unquote(value.strip())
    return headers


def _otel(signal: str, name: str) -> str | None:
    """``OTEL_EXPORTER_OTLP_<SIGNAL>_<name>``, else ``OTEL_EXPORTER_OTLP_<name>``; blank counts as unset."""
    for key in (f"OTEL_EXPORTER_OTLP_{signal.upper()}_{name}", f"OTEL_EXPORTER_OTLP_{name}"):
        value = os.environ.get(key, "").strip()
        if value:
            return value
    return None


def _timeout(signal: str) -> float | None:
    raw = _otel(signal, "TIMEOUT")
    if raw is None:
        return None
    try:
        millis = float(raw)
    except ValueError:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT must be milliseconds, got {raw!r}") from None
    if not 100 <= millis <= 120_000:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_TIMEOUT must be between 100 and 120000 milliseconds, got {raw!r}")
    return millis / 1000


def _readable(path: str | None, name: str) -> str | None:
    if path is not None and not os.access(path, os.R_OK):
        raise ConfigError(f"{name} names a file that cannot be read: {path!r}")
    return path


def _endpoint(signal: str, export_timeout: float = 5.0) -> Endpoint:
    env = os.environ
    upper = signal.upper()
    protocol = _otel(signal, "PROTOCOL") or "http/protobuf"
    if protocol not in PROTOCOLS:
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use http/protobuf or grpc")
    url = env.get(f"OTEL_EXPORTER_OTLP_{upper}_ENDPOINT", "").strip()
    if not url:  # the generic endpoint is a base URL; HTTP appends the signal path (OTel spec)
        base = (env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINTS[protocol]).rstrip("/")
        url = base if protocol == "grpc" else f"{base}/{SIGNAL_PATHS[signal]}"
    if protocol == "http/protobuf" and not url.startswith(("http://", "https://")):
        raise ConfigError(f"OTLP {signal} endpoint must start with http:// or https://, got {redact_url(url)!r}")
    if protocol == "grpc" and "://" in url and not url.startswith(("http://", "https://")):
        raise ConfigError(f"OTLP/gRPC {signal} endpoint must be http(s):// or host:port, got {redact_url(url)!r}")
    headers = parse_headers(env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    headers.update(parse_headers(env.get(f"OTEL_EXPORTER_OTLP_{upper}_HEADERS", "")))
    if "://" in url:  # a gRPC host:port has no userinfo to move
        try:
            url = _credentials_to_header(url, headers)
        except ValueError:
            raise ConfigError(f"OTLP {signal} endpoint is not a valid URL: {redact_url(url)!r}") from None
    compression = (_otel(signal, "COMPRESSION") or "none").lower()
    if compression not in ("gzip", "none"):
        raise ConfigError(f"OTEL_EXPORTER_OTLP_COMPRESSION must be gzip or none, got {compression!r}")
    client_certificate = _readable(_otel(signal, "CLIENT_CERTIFICATE"), "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    client_key = _readable(_otel(signal, "CLIENT_KEY"), "OTEL_EXPORTER_OTLP_CLIENT_KEY")
    if bool(client_certificate) != bool(client_key):
        raise ConfigError("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together")
    return Endpoint(
        url=url,
        headers=headers,
        gzip=compression == "gzip",
        certificate=_readable(_otel(signal, "CERTIFICATE"), "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        client_certificate=client_certificate,
        client_key=client_key,
        protocol=protocol,
        timeout=_timeout(signal) or export_timeout,
        insecure=(_otel(signal, "INSECURE") or "false").lower() == "true",
    )


def service_name() -> str:
    """The configured ``service.name``: ``OTEL_SERVICE_NAME``, else ``OTEL_RESOURCE_ATTRIBUTES``, else airflow.

    The precedence is the OTel SDK's; the read-back side (lookup, queries) uses the same function, so it
    finds what this environment's processes sent.
    """
    name = os.environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return name
    for item in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if sep and unquote(key.strip()) == "service.name" and value.strip():
            return unquote(value.strip())
    return contract.SERVICE_NAME


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED=true`` (case-insensitive, as the spec says; any other value means enabled)."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _airflow_overtime() -> float:
    conf = _airflow_conf()
    try:
        return float(conf.get("core", "task_success_overtime", fallback=AIRFLOW_OVERTIME_DEFAULT_S))
    except Exception:
        return AIRFLOW_OVERTIME_DEFAULT_S


def _flush_budget() -> float:
    """flush_budget, refused when the exit could not finish before Airflow's SIGTERM."""
    budget = _float("flush_budget")
    if not _READ_AIRFLOW_CFG.get():  # the job side: not a task process, Airflow's supervisor does not apply
        return budget
    overtime = _airflow_overtime()
    if budget + EXIT_RESERVE_S > overtime:
        raise ConfigError(
            f"[{SECTION}] flush_budget = {budget:g} s cannot finish before Airflow's SIGTERM: a task process "
            f"is terminated [core] task_success_overtime = {overtime:g} s after its terminal state, and "
            f"{EXIT_RESERVE_S:g} s of that are kept for the rest of the exit; use at most "
            f"{max(0.0, overtime - EXIT_RESERVE_S):g} (or raise task_success_overtime)"
        )
    return budget


def load(airflow_cfg: bool = True) -> PluginConfig:
    """Read the configuration; raises ConfigError with a clear message on a bad value.

    ``airflow_cfg=False`` (the job side): environment only, airflow.cfg is not read and Airflow not imported.
    """
    token = _READ_AIRFLOW_CFG.set(airflow_cfg)
    try:
        return _load()
    finally:
        _READ_AIRFLOW_CFG.reset(token)


def _load() -> PluginConfig:
    # OTEL_SDK_DISABLED: the spec's "no-op SDK for all signals"; the plugin then records nothing at all.
    enabled = _bool("enabled") and not sdk_disabled()
    spool = _raw("spool_dir")
    export_timeout = _float("export_timeout")
    return PluginConfig(
        enabled=enabled,
        metrics=_bool("metrics"),
        events=_bool("events"),
        traces=_bool("traces"),
        json_path=(_raw("json_path") or "").strip(),
        flush_budget=_flush_budget(),
        export_timeout=export_timeout,
        spool_dir=Path(spool).expanduser() if spool and spool.strip() else _default_spool_dir(),
        spool_max_bytes=int(_float("spool_max_mb") * 2**20),
        service_name=service_name(),
        schedule_report_interval=_float("schedule_report_interval"),
        endpoints={signal: _endpoint(signal, export_timeout) for signal in SIGNAL_PATHS} if enabled else {},
    )


def get() -> PluginConfig | None:
    """The process's configuration, read once; None (and one clear error in the log) if it is invalid."""
    state = process.current()
    if state.config is UNSET:
        try:
            state.config = load()
        except ConfigError as exc:
            log.error("otel_plugin disabled: %s", exc)
            state.config = None
    return state.config


def reset() -> None:
    """Forget the configuration read (tests)."""
    process.current().config = UNSET
