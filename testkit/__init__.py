"""Test support shared by tests/, benchmarks/ and demo/: one copy of each helper, importable from the repo root.

- ``testkit.wait``: poll a probe until done (``poll`` returns the last value, ``wait_until`` fails loudly).
- ``testkit.net``: free local ports.
- ``testkit.airflow_local``: a real Airflow (api-server, scheduler, dag-processor) as local processes.

Not part of the installed package (pyproject ships ``otel_plugin`` only).
"""
