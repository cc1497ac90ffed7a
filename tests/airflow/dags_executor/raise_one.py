"""One task that raises: the DAG of issue 17 (`airflow dags test raise_one --use-executor` hung at shutdown)."""

import datetime as dt

from airflow.sdk import dag, task


@dag(dag_id="raise_one", start_date=dt.datetime(2026, 1, 1), schedule=None, catchup=False)
def raise_one():
    @task
    def boom():
        raise RuntimeError("boom")

    boom()


raise_one()
