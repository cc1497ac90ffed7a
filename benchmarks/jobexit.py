"""A batch job's end, for the job exit-delay measurement: ``python -m benchmarks.jobexit none|collector|gateway``.

The job has counted its rows in a prometheus_client registry (as a job behind a Pushgateway does); it
prints the wall-clock time at which its work ends, reports the registry and exits normally, so atexit
handlers run as in a real job process:

- ``none``: reports nothing;
- ``collector``: ``otel_plugin.job.push_to_collector`` (the job side: run context from the environment,
  bounded by the flush budget, spooled when the Collector does not take it; at exit the job's event and
  span, flushed within the budget);
- ``gateway``: prometheus_client ``push_to_gateway`` to ``BENCH_PUSHGATEWAY`` with its default timeout
  (30 s); an error propagates, as in a job that does not catch it (the job then exits non-zero).

No Airflow module is imported: a job process (a Spark driver, a container) does not have Airflow.
"""

from __future__ import annotations

import os
import sys
import time

import prometheus_client

GROUPING_KEY = {"dag_id": "bench_jobexit", "task_id": "load"}


def main(kind: str) -> None:
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("bench_job_rows", "Rows the job processed", registry=registry).inc(5)
    if kind == "collector":
        from otel_plugin.job import push_to_collector, runtime

        runtime.get()  # the job side set up during the job's life, as any earlier record would
        report = lambda: push_to_collector(registry, job="bench_jobexit")  # noqa: E731
    elif kind == "gateway":
        report = lambda: prometheus_client.push_to_gateway(  # noqa: E731
            os.environ["BENCH_PUSHGATEWAY"], job="bench_jobexit", grouping_key=GROUPING_KEY, registry=registry)
    else:
        report = lambda: None  # noqa: E731
    print(f"{time.time():.6f}", flush=True)  # the job's work is done
    report()


if __name__ == "__main__":
    main(sys.argv[1])
