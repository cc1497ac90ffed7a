"""Real Airflow for tests: a fresh AIRFLOW_HOME with the test DAGs and the plugin exporting to the stack."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import stack  # noqa: F401 - the session fixture that starts the stack

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "compose"))

from airflow_local import AirflowLocal  # noqa: E402


@pytest.fixture(scope="session")
def airflow(tmp_path_factory, stack) -> Iterator[AirflowLocal]:  # noqa: F811
    home = tmp_path_factory.mktemp("airflow")
    local = AirflowLocal(home, ROOT / "tests" / "airflow" / "dags", port=28080, extra_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "AIRFLOW__OTEL_PLUGIN__JSON_PATH": str(home / "events.jsonl"),
    })
    local.migrate()
    yield local
    local.stop()
