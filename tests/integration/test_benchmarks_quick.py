"""The benchmarks' quick mode runs end to end and prints its tables (figures are not asserted: a benchmark
is not a timed test; benchmarks/RESULTS.md holds them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from testkit.stackutil import ROOT

pytestmark = pytest.mark.stack

TABLES = ("Concurrency:", "Cardinality, Pushgateway", "Cardinality, this pipeline", "Overhead: time each",
          "Overhead: task-exit delay", "Throughput:", "Jobs: K batch jobs", "Jobs: exit delay")


def test_quick_mode_prints_every_table(stack, tmp_path) -> None:
    out = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=5400, check=False)  # may wait for a running bench
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for title in TABLES:
        assert f"#### {title}" in proc.stdout, f"no table {title!r} in the output:\n{proc.stdout[-3000:]}"
    written = out.read_text()
    assert "## Quick mode" in written and "Concurrency:" in written
    # The quick mode's own claim about this pipeline: K failures at once end up as exactly K.
    assert "this pipeline 100 of 100" in written, written
    # ... and K jobs pushing the same application metric (5 rows each) add up: 100 jobs, 500 rows.
    assert "push_to_collector 500 of 500" in written, written
    # ... and the throughput senders' first step (50 runs/s) arrives whole (their config once disabled them).
    assert "Highest sustained rate with nothing lost in this run: none" not in written, written
