"""Real Airflow 3 with CeleryExecutor: Redis (Debian package) as broker and result backend, the scheduler,
api-server and dag-processor, and two Celery workers on this machine, each with its own spool (as each
worker pod would have). A third worker, alone on its own queue, cannot reach the api-server: every try
routed to it fails before its task process starts, so the scheduler fails it on the executor's word (what
a worker that loses tries does). DAG ids carry a per-session suffix, so every count starts in this session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.airflow_local import CeleryAirflowLocal
from testkit.local_servers import LocalRedis
from testkit.net import free_port

ROOT = Path(__file__).resolve().parents[2]

SUFFIX = uuid.uuid4().hex[:8]
DAGS = {name: f"celery_{name}_{SUFFIX}" for name in ("burst", "slow")}  # tests/celery/dags
WORKERS = ("worker1", "worker2")
CONCURRENCY = 6  # per worker: 12 task processes at once on 2 cores
LOST_WORKER = "lost"
LOST_QUEUE = "lost"  # tests/celery/dags/celery_dags.py: the only queue LOST_WORKER serves


@pytest.fixture(scope="session")
def redis(tmp_path_factory) -> Iterator[LocalRedis]:
    with LocalRedis(tmp_path_factory.mktemp("redis"), port=free_port(26379)) as server:
        yield server


@pytest.fixture(scope="session")
def airflow(tmp_path_factory, stack, redis, airflow_database) -> Iterator[CeleryAirflowLocal]:
    home = tmp_path_factory.mktemp("airflow_celery")
    local = CeleryAirflowLocal(home, ROOT / "tests" / "celery" / "dags", redis.url, port=free_port(), extra_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "E2E_SUFFIX": SUFFIX,
        "AIRFLOW__CORE__PARALLELISM": str(CONCURRENCY * len(WORKERS)),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(CONCURRENCY * len(WORKERS)),
        # A killed worker's tries stop heartbeating: fail them (and retry) after 30 s, not 5 minutes.
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        # A try the killed worker took but had not started stays queued: queue it again after 60 s, not 10 min.
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
    }, database_url=airflow_database("airflow_celery"))
    with local:
        local.start(*local.COMPONENTS)
        for worker in WORKERS:
            local.start_worker(worker, CONCURRENCY)
        local.start_worker(LOST_WORKER, 1, queues=LOST_QUEUE, extra_env={
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{free_port()}/execution/",
            "AIRFLOW__WORKERS__EXECUTION_API_RETRIES": "1",
        })
        for dag_id in DAGS.values():
            local.wait_for_dag(dag_id)
        yield local
