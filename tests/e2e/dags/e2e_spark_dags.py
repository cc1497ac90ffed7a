"""The Spark DAG of the end-to-end tests (tests/e2e/test_spark_job.py): a real PySpark job in local mode
through SparkSubmitOperator, the same application as demo_spark (examples/spark-job/count_orders.py)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import dag

from otel_plugin import api

SUFFIX = os.environ.get("E2E_SUFFIX", "local")
APPLICATION = Path(__file__).resolve().parents[3] / "examples" / "spark-job" / "count_orders.py"
ORDERS = 700  # every 7th order is rejected: 100 rejected, 600 rows written per run


@dag(dag_id=f"e2e_spark_{SUFFIX}", start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), schedule=None,
     catchup=False, max_active_runs=2)
def spark():
    SparkSubmitOperator(
        task_id="count_orders",
        application=str(APPLICATION),
        application_args=[str(ORDERS)],
        conn_id="spark_local",
        name="e2e_count_orders",
        conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1"},
        env_vars={"AIRFLOW_OTEL_JOB": "count_orders"},
        pre_execute=api.hand_run_context,
    )


spark()
