"""A new series whose first total a scrape reads counts once.

Prometheus dates a scrape by when it began and reads the Collector's exporter a few ms later; the pushed
copy of a new series dates its 0 sample (the stream's start) at the series' first delta. With the start
1 ms before that delta, a scrape that began just before it but read just after stored the new total
BEFORE the pushed 0, and the 0 read as a counter reset: the try counted twice (seen in the fault matrix;
raw samples 1, 0, 1). collector/restampprocessor puts the start `start_lead` (1 s) earlier.

The race needs a new series to arrive within the few ms a scrape takes, so this test makes a new series
as fast as the Collector answers, for a minute (12 scrapes), with the CPU busy (a slow scrape widens the
window). Measured with 1 ms: series counted twice in 5 of 6 runs of 60 s with 1,541-4,037 series (2, 0,
2 and 2 in a script, then this test failed twice); with the lead, 0 in 4 runs. Cost: about 80 s.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import Counter, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader

from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]

SECONDS = 60.0
HOGS = 4  # busy processes on the machine's cores while the series arrive


def test_new_series_read_by_a_racing_scrape_count_once() -> None:
    dag_id = f"scrape_race_{uuid.uuid4().hex[:10]}"
    exporter = OTLPMetricExporter(endpoint=f"{su.COLLECTOR_OTLP_HTTP}/v1/metrics", timeout=5,
                                  preferred_temporality={Counter: AggregationTemporality.DELTA})
    provider = MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)])
    counter = provider.get_meter("otel_plugin").create_counter("scrape_race.probe")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(HOGS)]
    sent = 0
    try:
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            counter.add(1, {"dag_id": dag_id, "task_id": f"t{sent}"})
            assert provider.force_flush(10_000)
            sent += 1
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        provider.shutdown()
    selector = f'scrape_race_probe_total{{dag_id="{dag_id}"}}'
    su.wait_until(lambda: su.prom_value(f"count({selector})"), ok=lambda n: n == sent, timeout=60,
                  what=f"{sent} series")
    time.sleep(6)  # one more scrape: a late scraped sample must not change the count
    series = su.prom_query(f"{selector}[30m]")
    raw = {one["metric"]["task_id"]: su.series_samples(one) for one in series}
    twice = {task: samples for task, samples in raw.items() if su.counter_total(samples) != 1}
    assert len(series) == sent
    assert not twice, f"{len(twice)} of {sent} series do not count 1 (raw samples): {twice}"
