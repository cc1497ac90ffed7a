"""A store is down (VictoriaLogs or Jaeger): the Collector accepts the telemetry, keeps it in its persistent
(file_storage) queue, also across a Collector restart, and delivers it exactly once when the store is back.
Nothing waits on the worker: the task processes' spool stays empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit import harness as h
from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]


@pytest.mark.parametrize("store", ["victorialogs", "jaeger"])
def test_store_outage_is_bridged_by_the_collectors_disk_queue(store: str, spool: Path, run: tuple[str, str]) -> None:
    dag_id, run_id = run
    want = h.expected_for(tasks=3)
    with h.outage(store):
        h.run_tasks(h.task_specs(dag_id, run_id, ["a", "b", "c"], dag_run="success"), h.plugin_env(spool))
        assert h.spool_files(spool) == {}, "the Collector accepted everything; nothing should wait on the worker"
        # Metrics do not go through the store that is down: counted at once.
        su.wait_until(lambda: su.finished_total(dag_id), ok=lambda v: v == want.finished, timeout=30, what="counts")
        # Restart the Collector while the store is still down: only the disk queue survives that.
        su.stack("stop", "collector")
        su.stack("start", "collector")
    # Events and spans arrive exactly once. The counts were checked above: what an instant query shows right
    # after the restart races the scrape's staleness marker with the durable push, so it is not compared.
    got = h.wait_exactly(dag_id, run_id, want, timeout=120, counts=False)
    assert (got.events, got.spans) == (want.events, want.spans)
