"""The plugin configured as a user would, through its documented variables, for a child process or for this
one (benchmarks drive the listener in-process)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from otel_plugin.core import config
from testkit.stackutil import COLLECTOR_OTLP_HTTP

OWN_PREFIXES = ("OTEL_", "AIRFLOW__OTEL_PLUGIN__")


def plugin_env(spool_dir: Path, endpoint: str = COLLECTOR_OTLP_HTTP, budget: float = 2.0,
               **extra: str) -> dict[str, str]:
    """The environment of a task process: this one's, minus any OTel/plugin setting it had, plus where to
    send, where to spool and how long to wait at exit; ``extra`` adds or overrides variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
    env.update({
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "AIRFLOW__OTEL_PLUGIN__SPOOL_DIR": str(spool_dir),
        "AIRFLOW__OTEL_PLUGIN__FLUSH_BUDGET": str(budget),
        **extra,
    })
    return env


@contextlib.contextmanager
def plugin_environ(spool_dir: Path, endpoint: str = COLLECTOR_OTLP_HTTP, budget: float = 2.0,
                   **extra: str) -> Iterator[None]:
    """This process's environment set to ``plugin_env(...)`` while the block runs (the plugin's config cache
    is reset on the way in and out)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(plugin_env(spool_dir, endpoint, budget, **extra))
    config.reset()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        config.reset()
