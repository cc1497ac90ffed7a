"""The ``[otel_plugin]`` options: one table that the config loader, its defaults and the README's table
come from (a test keeps the README equal to ``markdown()``).

Every key can be overridden with ``AIRFLOW__OTEL_PLUGIN__<KEY>`` (Airflow's own rule). The standard
``OTEL_*`` variables are read by ``otel_plugin.core.config``.
"""

from __future__ import annotations

from dataclasses import dataclass

SECTION = "otel_plugin"


@dataclass(frozen=True)
class Option:
    key: str
    kind: type  # bool, float or str
    default: bool | float | str
    meaning: str
    minimum: float = 0.0  # numbers only
    maximum: float = 0.0
    shown_default: str = ""  # when the default is computed at run time
    unit: str = ""  # numbers: "seconds" or "MB", for error messages

    @property
    def env(self) -> str:
        return f"AIRFLOW__{SECTION.upper()}__{self.key.upper()}"

    def default_text(self) -> str:
        if self.shown_default:
            return self.shown_default
        if self.kind is bool:
            return "true" if self.default else "false"
        return f"{self.default:g}" if self.kind is float else "(off)"


OPTIONS = (
    Option("enabled", bool, True, "master switch; false registers no listener"),
    Option("metrics", bool, True, "send the delta metrics"),
    Option("events", bool, True, "send one event (OTLP log record) per state change"),
    Option("traces", bool, True, "send one span per task try and per DAG run"),
    Option("json_path", str, "", "also write the events as JSON lines to this file, or `-` for stdout"),
    Option("flush_budget", float, 2.0,
           "seconds a finishing task may spend exporting, all signals and all exit flushes together; at most "
           "`[core] task_success_overtime` - 5 s (15 s by default), else the plugin is disabled with a clear error",
           minimum=0.0, maximum=60.0, unit="seconds"),
    Option("export_timeout", float, 5.0,
           "seconds for one export request (`OTEL_EXPORTER_OTLP_TIMEOUT`, in milliseconds, wins)",
           minimum=0.1, maximum=120.0, unit="seconds"),
    Option("spool_dir", str, "",
           "where undelivered data waits; the next task on the host, or `python -m otel_plugin replay`, sends it",
           shown_default="`$AIRFLOW_HOME/otel_spool`"),
    Option("spool_max_mb", float, 256, "spool cap; the oldest payloads go first, with an error in the log",
           minimum=1, maximum=1_000_000, unit="MB"),
    Option("schedule_report_interval", float, 30.0,
           "seconds between the scheduler's schedule reports (the freshness gauges behind the late and stuck "
           "alerts); `0` turns them off", minimum=0.0, maximum=3600.0, unit="seconds"),
)  # fmt: skip

BY_KEY = {option.key: option for option in OPTIONS}


def default(key: str) -> bool | float | str:
    return BY_KEY[key].default


def markdown() -> str:
    """The README's option table."""
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for option in OPTIONS:
        shown = option.default_text()
        shown = shown if shown.startswith(("`", "(")) else f"`{shown}`"
        rows.append(f"| `{option.key}` | {shown} | {option.meaning} |")
    return "\n".join(rows)
