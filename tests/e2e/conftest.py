"""One real Airflow (LocalExecutor, several processes) for the whole end-to-end session, with the plugin
exporting to the native stack. DAG ids carry a per-session suffix, so sessions never read each other's data."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.airflow_local import AirflowLocal
from testkit.net import free_port

ROOT = Path(__file__).resolve().parents[2]

SUFFIX = uuid.uuid4().hex[:8]
DAGS = {name: f"e2e_{name}_{SUFFIX}" for name in ("burst", "retry", "zero", "sched", "card")}  # tests/e2e/dags
FIRST_CARD_RUNS = 3


@pytest.fixture(scope="session")
def airflow(tmp_path_factory, stack, airflow_database) -> Iterator[AirflowLocal]:
    home = tmp_path_factory.mktemp("airflow_e2e")
    local = AirflowLocal(
        home,
        ROOT / "tests" / "e2e" / "dags",
        port=free_port(),
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "E2E_SUFFIX": SUFFIX,
            # 16 task processes at once: enough overlap on 2 cores without starving the scheduler.
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
        },
        database_url=airflow_database("airflow_e2e"),
    )
    with local:
        local.start("api-server", "scheduler", "dag-processor")
        for dag_id in DAGS.values():
            local.wait_for_dag(dag_id)
        yield local


@pytest.fixture(scope="session")
def runs(airflow) -> dict[str, list[str]]:
    """The run ids of every DAG, all triggered at the start so their tasks share the machine; the burst first."""
    return {
        name: [airflow.trigger(dag_id) for _ in range(FIRST_CARD_RUNS if name == "card" else 1)]
        for name, dag_id in DAGS.items()
    }
