"""The job side runs where Airflow is not installed: a process in which importing airflow fails records and
exports metrics, a pushed registry, a fact, spans and its event, and never even tries to import Airflow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import importlib.abc, json, sys

    attempts = []

    class NoAirflow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "airflow" or name.startswith("airflow."):
                attempts.append(name)
                raise ImportError(f"airflow is not installed here ({name})")
            return None

    sys.meta_path.insert(0, NoAirflow())

    from otel_plugin.core import transport
    posted = []
    # Export through the real encoders and sender; only the network write is replaced.
    transport.Sender.post = lambda self, payload, timeout=None: posted.append(self.signal) or True

    from prometheus_client import CollectorRegistry, Counter
    from otel_plugin import __main__, api, job
    from otel_plugin.job import push_to_collector, runtime

    job.counter("rows_processed").add(5, {"source": "s3"})
    api.histogram("batch_seconds", unit="s").record(1.5)
    job.set_fact("output", "s3://bucket/x")
    with job.span("step"):
        pass
    registry = CollectorRegistry()
    Counter("pushed_rows", "rows", registry=registry).inc(3)
    pushed = push_to_collector(registry, job="loader")
    runtime.get().finish()
    print(json.dumps({"attempts": attempts, "posted": posted, "pushed": pushed,
                      "airflow_modules": [m for m in sys.modules if m.split(".")[0] == "airflow"]}))
''')


def test_job_side_records_and_exports_without_airflow(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OTEL_"))},
        "AIRFLOW_OTEL_DAG_ID": "etl", "AIRFLOW_OTEL_TASK_ID": "load", "AIRFLOW_OTEL_RUN_ID": "manual__1",
        "TRACEPARENT": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
        "AIRFLOW__OTEL_PLUGIN__SPOOL_DIR": str(tmp_path / "spool"),
    }  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [] and result["airflow_modules"] == []
    assert result["pushed"] is True
    # push_to_collector's payload, then the exit flush: spans, the event, the SDK metrics.
    assert sorted(set(result["posted"])) == ["logs", "metrics", "traces"]
    assert result["posted"].count("metrics") == 2
