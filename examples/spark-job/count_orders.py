"""A PySpark job that reports into its Airflow task's run through the job side (``otel_plugin.job``).

Run by ``SparkSubmitOperator`` (demo/dags, tests/e2e/dags) with the task's ``otel_plugin.api.job_env()``
in spark-submit's environment; the PySpark driver inherits it. No Airflow module is imported here: the
driver needs only ``pyspark`` and ``airflow-otel-plugin``.

Usage::

    spark-submit --master 'local[1]' examples/spark-job/count_orders.py [ORDERS]

Counts ORDERS synthetic orders (default 1000), rejects those with amount 0 (every 7th), and records:
``rows_processed`` (the valid rows) and ``orders_rejected`` as delta counters with ``dag_id``/``task_id``,
the facts ``rows_read``/``rows_written`` on the job's event, and one span per Spark stage under the job's
span, itself a child of the task try's span.
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from otel_plugin import job


def main(argv: list[str]) -> int:
    orders = int(argv[1]) if len(argv) > 1 else 1000
    spark = SparkSession.builder.appName("count_orders").getOrCreate()
    try:
        with job.span("read orders", {"orders": orders}):
            frame = spark.range(orders).withColumn("amount", (F.col("id") % 7) * 10).cache()
            read = frame.count()
        with job.span("validate orders"):
            valid = frame.filter(F.col("amount") > 0).count()
    finally:
        spark.stop()
    job.counter("rows_processed", description="Rows the Spark job wrote").add(valid, {"stage": "validate"})
    job.counter("orders_rejected", description="Orders rejected for a zero amount").add(read - valid)
    job.set_fact("rows_read", read)
    job.set_fact("rows_written", valid)
    print(f"count_orders: read {read}, valid {valid}, rejected {read - valid}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
