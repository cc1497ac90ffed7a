"""DAGs of the end-to-end tests. Their ids end in $E2E_SUFFIX (one per test session), so every session
writes brand-new series, events and traces even against a long-lived stack other sessions also use."""

from __future__ import annotations

import datetime as dt
import os
import time

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowSkipException

SUFFIX = os.environ.get("E2E_SUFFIX", "local")
BURST_SIZE = 55
BURST_ALIGN_S = 2.0  # burst tasks fail on the same wall-clock tick, so each wave's failures coincide
ARGS = {"start_date": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "schedule": None, "catchup": False}
RETRY = {"retries": 1, "retry_delay": dt.timedelta(seconds=1)}


@dag(dag_id=f"e2e_burst_{SUFFIX}", **ARGS)
def burst():
    @task
    def explode(item: int) -> None:
        time.sleep(BURST_ALIGN_S - time.time() % BURST_ALIGN_S)
        raise RuntimeError(f"e2e: item {item} fails with the others")

    explode.expand(item=list(range(BURST_SIZE)))


@dag(dag_id=f"e2e_retry_{SUFFIX}", **ARGS)
def retry():
    @task(**RETRY)
    def flaky(ti=None) -> None:
        if ti.try_number == 1:
            raise ConnectionError("e2e: first try times out")

    @task(**RETRY)
    def doomed() -> None:
        raise ValueError("e2e: fails on every try")

    flaky()
    doomed()


@dag(dag_id=f"e2e_zero_{SUFFIX}", **ARGS)
def zero_rows():
    @task
    def empty_load() -> None:
        from otel_plugin import api

        api.record_rows(read=0, written=0)

    @task
    def full_load() -> None:
        from otel_plugin import api

        api.record_rows(read=5, written=5)

    empty_load()
    full_load()


@dag(dag_id=f"e2e_sched_{SUFFIX}", **ARGS)
def scheduler_states():
    @task
    def fail_hard() -> None:
        raise RuntimeError("e2e: fails, so its downstream is upstream_failed")

    @task
    def after_failure() -> None:
        """Never runs: upstream_failed, set by the scheduler."""

    @task
    def skip_self() -> None:
        raise AirflowSkipException("e2e: nothing to do")

    @task
    def after_skip() -> None:
        """Never runs: skipped by the scheduler."""

    fail_hard() >> after_failure()
    skip_self() >> after_skip()


@dag(dag_id=f"e2e_card_{SUFFIX}", max_active_runs=16, **ARGS)
def cardinality():
    """Every per-run value a label could leak: run ids, map indexes, try numbers, facts, checks."""

    @task
    def rows(part: int) -> None:
        from otel_plugin import api

        api.record_rows(read=10 + part, written=part)
        api.record_check("part_positive", part > 0)
        api.set_fact("part", part)

    @task(**RETRY)
    def flaky(ti=None) -> None:
        if ti.try_number == 1:
            raise ConnectionError("e2e: first try times out")

    rows.expand(part=[0, 1])
    flaky()


burst()
retry()
zero_rows()
scheduler_states()
cardinality()
