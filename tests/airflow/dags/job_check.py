"""A task with its own custom counter and child job processes adding to the same series
(tests/airflow/test_job_runs.py). $JOB_CHECK_SUFFIX makes the metric name new per test."""

from __future__ import annotations

import datetime as dt
import os

from airflow.sdk import dag, task

SUFFIX = os.environ.get("JOB_CHECK_SUFFIX", "local")
CHILD_JOBS = 3
CHILD_JOB = """
from otel_plugin import job
job.counter("jobcheck_rows_{suffix}", description="Rows").add(5, {{"kind": "a"}})
job.set_fact("part", "{part}")
with job.span("child work"):
    pass
"""


@dag(dag_id="job_check", start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), schedule=None, catchup=False)
def job_check():
    @task
    def parent() -> None:
        import subprocess
        import sys

        from otel_plugin import api

        api.counter(f"jobcheck_rows_{SUFFIX}", description="Rows").add(5, {"kind": "a"})
        # Child 0 only inherits the task's environment (the plugin put the try's ids in it); the others get
        # api.job_env(), as a pod or a remote spark-submit would.
        envs = [None] + [{**os.environ, **api.job_env()}] * (CHILD_JOBS - 1)
        children = [subprocess.Popen([sys.executable, "-c", CHILD_JOB.format(suffix=SUFFIX, part=i)], env=env)
                    for i, env in enumerate(envs)]
        codes = [child.wait(timeout=120) for child in children]
        if any(codes):
            raise RuntimeError(f"child jobs failed: {codes}")

    parent()


job_check()
