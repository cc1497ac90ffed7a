"""The Airflow plugin: registers the listener, unless the plugin is disabled or misconfigured."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from otel_plugin.airflow import listener
from otel_plugin.core import config


def _listeners() -> list[object]:
    cfg = config.get()  # logs one clear error and returns None on a bad value
    return [listener] if cfg is not None and cfg.enabled else []


class OtelPlugin(AirflowPlugin):
    name = "otel_plugin"
    listeners = _listeners()
