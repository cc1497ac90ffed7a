"""demo_spark: a real PySpark job (local mode) run by SparkSubmitOperator, reporting into the task's run.

The task hands spark-submit its run context (``otel_plugin.api.job_env()``: TRACEPARENT, the run's ids,
the exporter settings) through ``env_vars``; the PySpark driver (examples/spark-job/count_orders.py)
records through the job side (``otel_plugin.job``): counters ``rows_processed`` and ``orders_rejected``
with dag_id/task_id, a job event with its facts in the run's timeline, and its spans under the task's span.

Needs ``pip install 'airflow-otel-plugin[spark]'`` (pyspark, the Spark provider), Java 17, ``spark-submit``
on PATH, and the connection ``spark_local`` (``AIRFLOW_CONN_SPARK_LOCAL='{"conn_type": "spark",
"host": "local[1]"}'``; demo/run_demo.py sets both).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import dag

from otel_plugin import api

APPLICATION = Path(__file__).resolve().parents[2] / "examples" / "spark-job" / "count_orders.py"
ORDERS = 1000


@dag(schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False, tags=["demo", "otel"])
def demo_spark():
    """A PySpark job counts and validates orders, and reports rows and rejects through the job side."""
    SparkSubmitOperator(
        task_id="count_orders",
        application=str(APPLICATION),
        application_args=[str(ORDERS)],
        conn_id="spark_local",
        name="count_orders",
        conf={"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "1"},
        env_vars={"AIRFLOW_OTEL_JOB": "count_orders"},
        pre_execute=api.hand_run_context,
    )


demo_spark()
