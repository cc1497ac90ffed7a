"""DAGs of the CeleryExecutor tests; ids end in $E2E_SUFFIX (one per session), so counts start at zero.

- burst: 55 mapped tries that all fail on the same wall-clock tick (the e2e burst, across two workers), and
  3 mapped tries routed to a worker that cannot reach the api-server: each fails before its task process
  starts, and the scheduler fails it on the executor's word (the failed hook fires in the scheduler);
- slow: mapped tries that run long enough for a worker to be killed under them; each retries once.
"""

from __future__ import annotations

import datetime as dt
import os
import time

from airflow.sdk import dag, task

SUFFIX = os.environ.get("E2E_SUFFIX", "local")
BURST_SIZE = 55
LOST_SIZE = 3
LOST_QUEUE = "lost"  # served only by the worker that cannot reach the api-server (tests/celery/conftest.py)
SLOW_SIZE = 18  # a wave and a half on 2 x 6 pool children: a worker is killed with finished and running tries
SLOW_SECONDS = 6
ARGS = {"start_date": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "schedule": None, "catchup": False}


@dag(dag_id=f"celery_burst_{SUFFIX}", **ARGS)
def burst():
    @task
    def explode(item: int) -> None:
        time.sleep(2.0 - time.time() % 2.0)
        raise RuntimeError(f"celery: item {item} fails with the others")

    @task(queue=LOST_QUEUE)
    def lost(item: int) -> None:
        raise AssertionError("never runs: its worker cannot start a task process")

    explode.expand(item=list(range(BURST_SIZE)))
    lost.expand(item=list(range(LOST_SIZE)))


@dag(dag_id=f"celery_slow_{SUFFIX}", **ARGS)
def slow():
    @task(retries=1, retry_delay=dt.timedelta(seconds=1))
    def work(item: int) -> int:
        time.sleep(SLOW_SECONDS)
        return item

    work.expand(item=list(range(SLOW_SIZE)))


burst()
slow()
