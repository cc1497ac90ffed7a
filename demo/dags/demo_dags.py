"""Demo DAGs for the OpenTelemetry plugin: each shows one thing the plugin records.

- demo_etl: a normal ETL run, extract >> transform >> load, recording rows, bytes, a check and facts.
- demo_zero_rows: succeeds while processing 0 rows (the "green tick" the plugin makes visible).
- demo_flaky: a task fails its first try and succeeds on the retry (deterministic, by try number).
- demo_mapped: a task mapped over 10 items, of which items 3 and 7 fail.
- demo_failure_and_skip: scheduler-side states: upstream_failed after a failure, skipped after a self-skip.

Business facts go through the plugin's in-task API (``otel_plugin.api``), imported inside the tasks so
that parsing the DAGs stays cheap. All DAGs run on manual triggers only.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException

DEMO_DAG_ARGS = {
    "schedule": None,
    "start_date": datetime(2026, 1, 1, tzinfo=timezone.utc),
    "catchup": False,
    "tags": ["demo", "otel"],
}
ORDERS = [{"id": i, "amount": round(9.5 * i, 2), "country": "DE" if i % 3 else "FR"} for i in range(1, 26)]
MAPPED_ITEMS = list(range(10))
FAILING_ITEMS = {3, 7}


@dag(**DEMO_DAG_ARGS)
def demo_etl():
    """A normal ETL run, extract >> transform >> load, recording rows, bytes, a check and a fact."""

    @task
    def extract() -> list[dict]:
        from otel_plugin import api

        api.set_fact("source", "demo://orders")
        api.record_rows(read=len(ORDERS), written=len(ORDERS))
        api.record_bytes(read=len(json.dumps(ORDERS)), written=len(json.dumps(ORDERS)))
        return ORDERS

    @task
    def transform(orders: list[dict]) -> list[dict]:
        from otel_plugin import api

        german = [o for o in orders if o["country"] == "DE"]
        api.record_rows(read=len(orders), written=len(german))
        api.record_check("amounts_positive", all(o["amount"] > 0 for o in german))
        return german

    @task
    def load(orders: list[dict]) -> None:
        from otel_plugin import api

        api.record_rows(read=len(orders), written=len(orders))
        api.set_fact("target", "demo://warehouse/orders_de")

    load(transform(extract()))


demo_etl()


@dag(**DEMO_DAG_ARGS)
def demo_zero_rows():
    """A run that succeeds while processing 0 rows (the "green tick" the plugin makes visible)."""

    @task
    def extract_new_orders() -> list[dict]:
        from otel_plugin import api

        new_orders: list[dict] = []  # the upstream export was empty today
        api.record_rows(read=len(new_orders), written=len(new_orders))
        return new_orders

    @task
    def load_new_orders(orders: list[dict]) -> None:
        from otel_plugin import api

        api.record_rows(read=len(orders), written=len(orders))
        api.record_check("has_rows", bool(orders))

    load_new_orders(extract_new_orders())


demo_zero_rows()


@dag(**DEMO_DAG_ARGS)
def demo_flaky():
    """A flaky task that fails its first try and succeeds on the retry (deterministic: by try number)."""

    @task(retries=1, retry_delay=timedelta(seconds=2))
    def call_flaky_api() -> int:
        from otel_plugin import api

        try_number = get_current_context()["ti"].try_number
        if try_number == 1:
            raise ConnectionError("demo: the API timed out on the first try")
        api.record_rows(read=42, written=42)
        return 42

    @task
    def store(count: int) -> None:
        from otel_plugin import api

        api.record_rows(read=count, written=count)

    store(call_flaky_api())


demo_flaky()


@dag(**DEMO_DAG_ARGS)
def demo_mapped():
    """A mapped task over 10 items where items 3 and 7 fail; the run fails, the other items succeed."""

    @task
    def process(item: int) -> int:
        from otel_plugin import api

        if item in FAILING_ITEMS:
            raise ValueError(f"demo: item {item} is malformed")
        api.record_rows(read=item + 1, written=item + 1)
        return item

    process.expand(item=MAPPED_ITEMS)


demo_mapped()


@dag(**DEMO_DAG_ARGS)
def demo_failure_and_skip():
    """Scheduler-side states. A failing task's downstream becomes upstream_failed; a task that skips
    itself makes its downstream skipped by the scheduler."""

    @task
    def fail_hard() -> None:
        from otel_plugin import api

        api.record_check("source_reachable", False)
        raise RuntimeError("demo: the source database refused the connection")

    @task
    def publish_report() -> None:
        """Never runs: its upstream failed (upstream_failed, recorded by the scheduler)."""

    @task
    def skip_on_holiday() -> None:
        raise AirflowSkipException("demo: nothing to do on a holiday")

    @task
    def send_newsletter() -> None:
        """Never runs: its upstream skipped itself (skipped by the scheduler)."""

    fail_hard() >> publish_report()
    skip_on_holiday() >> send_newsletter()


demo_failure_and_skip()
