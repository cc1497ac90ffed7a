"""Real Airflow for tests: a fresh AIRFLOW_HOME with the test DAGs and the plugin exporting to the stack.

The same tests run under whichever Airflow is installed beside the interpreter: 3.x from ``.venv``
and 2.x from ``.venv-af2`` (``make test-airflow2``), both on PostgreSQL (tests/conftest.py).

Airflow's own OpenTelemetry metrics are on too (``[metrics] otel_on``), into the same Collector, as on a
platform that turns both on: they take the Collector's ``*/other_apps`` path (test_with_airflow_own_metrics.py).
Their service name is new in every session, so that no series an earlier session's Airflow left in
Prometheus can stand in for this one's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.airflow_local import AirflowLocal, local_for_installed_airflow

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def database_url(airflow_database) -> str:
    return airflow_database("airflow")


@pytest.fixture(scope="session")
def airflow(tmp_path_factory, stack, database_url) -> Iterator[AirflowLocal]:
    home = tmp_path_factory.mktemp("airflow")
    local = local_for_installed_airflow(home, ROOT / "tests" / "airflow" / "dags", database_url, port=28080, extra_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "AIRFLOW__OTEL_PLUGIN__JSON_PATH": str(home / "events.jsonl"),
        # Airflow 2.x sends to otel_host:otel_port; 3.x prefers OTEL_EXPORTER_OTLP_ENDPOINT (the same Collector).
        "AIRFLOW__METRICS__OTEL_ON": "True",
        "AIRFLOW__METRICS__OTEL_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__OTEL_PORT": "4318",
        "AIRFLOW__METRICS__OTEL_SERVICE": f"airflow-own-{uuid.uuid4().hex[:8]}",
        "AIRFLOW__METRICS__OTEL_INTERVAL_MILLISECONDS": "5000",
    })
    local.migrate()
    yield local
    local.stop()
