"""Airflow task and DAG runs as exact delta metrics, structured events and one trace per run, over OTLP.

Install the package into Airflow's environment; the ``otel_plugin`` plugin registers itself through the
``airflow.plugins`` entry point (check with ``airflow plugins``). Point it at an OpenTelemetry Collector::

    export OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318
    export AIRFLOW__OTEL_PLUGIN__JSON_PATH=/var/log/airflow/events.jsonl   # optional

Inside tasks, ``otel_plugin.api`` records business facts (rows, bytes, checks) and hands the trace context
to child processes. Configuration: ``otel_plugin.core.config``; what is emitted: docs/telemetry.md.
"""

__version__ = "0.1.0"
