"""Fault matrix: a crash (SIGKILL) of the Collector or of a store around a burst from 30 task processes loses
no count, event or span that the Collector answered for.

- Collector: SIGKILL 0, 0.05, 1 and 3 s after the last task process got its answer (every payload answered
  2xx: the spool is empty), then start it again. What it accepted must come back from its disk queues; the
  counts must survive the loss of its in-memory running totals (Prometheus sees a counter reset and
  increase() counts across it). A second run after the restart adds to the same series.
- The stores (Prometheus, VictoriaLogs, Jaeger): SIGKILL all three as the burst starts, keep them down until
  every task process has its answer, then start them again: the Collector holds everything in its disk
  queues meanwhile.

Afterwards every store holds exactly what was sent (wait_exactly also watches a few seconds for duplicates),
and Prometheus counts every task try once through increase().
Cost: five bursts of 31 task processes (each imports Airflow: about 4.5 s of CPU) plus four of 6, the
restarts and 5 s of settle time each: about 7 minutes on 2 otherwise idle cores.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from otel_plugin.core import ids
from testkit import harness
from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]

TASKS = 30
AFTER = 5  # task processes of a second run after the Collector's restart, on series the first run started
SETTLE = 5.0  # seconds to keep watching for duplicates once everything arrived


def burst(dag_id: str, run_id: str, spool: Path, tasks: int, kill_at_start: tuple[str, ...] = ()) -> float:
    """One task process per task (t0, t1, ...) and one for the DAG run's end, all at once; returns when the
    last one exited, every payload answered. ``kill_at_start``: stores to SIGKILL once they are launched."""
    env = harness.plugin_env(spool, budget=5.0)
    specs = harness.task_specs(dag_id, run_id, [f"t{i}" for i in range(tasks)], dag_run="success")
    procs = [harness.start_task(spec, env) for spec in specs]
    for store in kill_at_start:
        su.stack("kill", store)
    with ThreadPoolExecutor(len(procs)) as pool:  # generous: 31 Airflow imports at once on 2 shared cores
        done = list(pool.map(lambda proc: harness.finish_task(proc, timeout=600), procs))
    failed = [f for f in done if f.returncode]
    assert not failed, failed[0].stderr[-3000:]
    if harness.spool_files(spool):
        print(f"replaying what waits in the spool: {harness.spool_files(spool)}")  # shown on a failure
        # On a loaded machine an answer can take longer than the exit budget: the payload waits in the
        # spool (not lost). Hand it over now, so that every payload has been answered before the fault.
        replayed = subprocess.run([sys.executable, "-m", "otel_plugin", "replay", "--timeout", "120"], env=env,
                                  cwd=su.ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    last_answer = time.monotonic()
    # Every payload was answered 2xx: nothing waits in the spool, so whatever is missing later was lost
    # after the Collector accepted it.
    assert harness.spool_files(spool) == {}, harness.spool_files(spool)
    return last_answer


def raw_series(dag_id: str) -> list[dict]:
    return su.prom_query(f'{su.FINISHED}{{dag_id="{dag_id}"}}[30m]')


def counted(dag_id: str) -> float:
    """Task tries of a DAG counted in Prometheus: every increment in the raw samples of its series, a drop
    counted as a reset (as increase() does, without its extrapolation: after a restart, series that got no
    new delta are no longer scraped, and increase() would extrapolate their last interval)."""
    return sum(su.counter_total(su.series_samples(one)) for one in raw_series(dag_id))


def miscounted(dag_id: str, runs: dict[str, int]) -> str:
    """For a failure message: each series whose increments are not its task's tries, with its raw samples
    (timestamp, value), so that a duplicate shows where it came from (a scrape or a push, when)."""
    tries = {f"t{i}": sum(1 for n in runs.values() if i < n) for i in range(max(runs.values()))}
    lines = []
    for one in raw_series(dag_id):
        samples = su.series_samples(one)
        if su.counter_total(samples) != tries.get(one["metric"].get("task_id", ""), 0):
            lines.append(f"{one['metric']}: {samples}")
    return "\n".join(lines) or "every series counts its tries"


def arrived(dag_id: str, runs: dict[str, int]) -> tuple[dict[str, tuple[int, int]], float]:
    stored = {r: (su.event_count(f'run_id:"{r}"'), su.span_count([ids.trace_id(dag_id, r, 0)])) for r in runs}
    return stored, counted(dag_id)


def assert_exact(dag_id: str, runs: dict[str, int]) -> None:
    """runs: run_id -> tasks in it. Every event and span of each run once, every task try counted once."""
    want = ({r: (2 * n + 1, n + 1) for r, n in runs.items()}, float(sum(runs.values())))
    try:
        su.wait_until(lambda: arrived(dag_id, runs),
                      ok=lambda got: got[0] == want[0] and got[1] == pytest.approx(want[1]),
                      timeout=120, interval=1.0, what=f"{want} for {dag_id}")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}\n{miscounted(dag_id, runs)}") from None
    time.sleep(SETTLE)
    got = arrived(dag_id, runs)
    assert got[0] == want[0]
    assert got[1] == pytest.approx(want[1]), miscounted(dag_id, runs)


@pytest.mark.parametrize("delay", [0.0, 0.05, 1.0, 3.0], ids=lambda d: f"{d:g}s")
def test_collector_sigkill_after_the_last_answer_loses_nothing(delay: float, spool: Path,
                                                               run: tuple[str, str]) -> None:
    dag_id, run_id = run
    last_answer = burst(dag_id, run_id, spool, TASKS)
    time.sleep(max(0.0, last_answer + delay - time.monotonic()))
    su.stack("kill", "collector")
    su.stack("start", "collector")
    # A second run on the same series after the restart: its counts start a new cumulative stream (the
    # running totals died with the process), which increase() must add to the first run's.
    burst(dag_id, f"{run_id}_after", spool, AFTER)
    assert_exact(dag_id, {run_id: TASKS, f"{run_id}_after": AFTER})
    assert su.delta_to_cumulative_errors() == 0


STORES = ("prometheus", "victorialogs", "jaeger")


def test_stores_sigkilled_during_a_burst_lose_nothing(spool: Path, run: tuple[str, str]) -> None:
    """All three stores crash at once (one burst instead of three: the Collector's queues are independent)."""
    dag_id, run_id = run
    try:
        burst(dag_id, run_id, spool, TASKS, kill_at_start=STORES)
    finally:
        for store in STORES:
            su.stack("start", store)
    assert_exact(dag_id, {run_id: TASKS})
