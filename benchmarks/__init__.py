"""Benchmarks of the plugin's pipeline side by side with the Pushgateway and StatsD architectures.

Usage: ``make bench`` (quick mode) or ``python -m benchmarks [--full] [--only NAME]``; results go to
``benchmarks/RESULTS.md``. Needs the native stack (``make stack-up``); starts and stops its own
Pushgateway, statsd_exporter and Prometheus on ports 19090-19125.

One module per scenario (``concurrency``, ``cardinality``, ``overhead``, ``throughput``, ``jobs``); shared pieces in
``common`` (tables, /proc, the process barrier), ``drive`` (the plugin's hooks, reading the stores back)
and ``peers`` (the comparison systems).
"""
