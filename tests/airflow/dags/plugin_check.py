"""A DAG with every path the plugin must record: retry, mapped failures, self-skip, upstream_failed."""

import datetime as dt

from airflow.exceptions import AirflowSkipException

try:
    from airflow.sdk import dag, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task


def plugin_check():
    @task(retries=1, retry_delay=dt.timedelta(seconds=1))
    def flaky(ti=None):
        from otel_plugin import api

        api.record_rows(read=3, written=0)
        if ti.try_number == 1:
            raise ValueError("first try fails; dsn=postgresql://etl:s3cr3tpass@db/x")

    @task
    def mapped(x: int) -> int:
        if x % 2:
            raise RuntimeError(f"odd item {x}")
        return x

    @task
    def collect(values) -> int:
        return len(list(values))

    @task
    def skipper():
        raise AirflowSkipException("nothing to do today")

    flaky()
    collect(mapped.expand(x=[0, 1, 2, 3]))
    skipper()


# One DAG per test, so no test reads counters another test is still writing.
for dag_id in ("plugin_check", "plugin_check_mp", "plugin_check_own_metrics"):
    dag(dag_id=dag_id, start_date=dt.datetime(2026, 1, 1), schedule=None, catchup=False)(plugin_check)()
