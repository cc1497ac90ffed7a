"""A run that misses its Deadline Alert (Airflow 3.1+): due 2 s after it was queued, its task takes 8 s.

No triggerer runs in the tests, so the alert's own callback stays queued; the plugin records the miss from
the run's end (otel_plugin/airflow/deadlines.py). Under Airflow 2.x / 3.0 this file defines no DAG.
"""

import datetime as dt
import time

try:
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference, dag, task
except ImportError:  # Airflow 2.x and 3.0: no Deadline Alerts
    dag = None

if dag is not None:

    @dag(dag_id="deadline_check", start_date=dt.datetime(2026, 1, 1), schedule=None, catchup=False,
         deadline=DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=dt.timedelta(seconds=2),
                                # Any awaitable the triggerer can import; none runs in the tests.
                                callback=AsyncCallback("asyncio.sleep", kwargs={"delay": 0}),
                                name="two_seconds"))
    def deadline_check():
        @task
        def slow():
            time.sleep(8)

        slow()

    deadline_check()
