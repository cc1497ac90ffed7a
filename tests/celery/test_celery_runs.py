"""CeleryExecutor for real: Redis, two Celery workers (prefork pools), the plugin in every task process
their pool children fork.

- The e2e burst (55 mapped tries failing on the same tick) across both workers, and 3 tries the executor
  reports failed before any task process started (the scheduler fails them: the hook fires there, and the
  run's end must not count them again): exact in Prometheus (raw samples from a 0 sample), one failure
  event per map index in VictoriaLogs, one trace per run in Jaeger.
- A worker killed with SIGKILL (its whole process group, as when its container dies) in the middle of a
  run and started again: every try that finished in a worker is counted exactly once in every store.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from otel_plugin.core import contract, ids
from otel_plugin.readback.stores import Jaeger, Span
from testkit import stackutil as su
from testkit.wait import poll
from tests.celery.conftest import CONCURRENCY, DAGS, WORKERS

pytestmark = [pytest.mark.airflow, pytest.mark.stack]

BURST_SIZE = 55  # tests/celery/dags/celery_dags.py
LOST_SIZE = 3
SLOW_SIZE = 18
RUN_TIMEOUT = 600.0
LANDING_TIMEOUT = 120.0
SETTLE_S = 5.0  # equal, and still equal this much later: a late duplicate would show
WINDOW = "30m"  # longer than the session: every series of this session starts inside it
FINISHED = contract.TASK_FINISHED.prometheus

jaeger = Jaeger(su.JAEGER)


def counted(dag_id: str, task_id: str, state: str) -> float:
    """Tries Prometheus counted, from the raw samples of the one series (it starts from a 0 sample)."""
    selector = f'{FINISHED}{{dag_id="{dag_id}",task_id="{task_id}",state="{state}"}}'
    try:
        return su.counter_total(su.prom_samples(selector, WINDOW))
    except AssertionError:  # not scraped yet
        return 0.0


def terminal_events(run_id: str, task_id: str | None = None) -> list[dict]:
    query = f'run_id:"{run_id}" AND event:task_instance' + (f' AND task_id:"{task_id}"' if task_id else "")
    return [e for e in su.logsql(query) if e["state"] != "running"]


def spans(dag_id: str, run_id: str, task_id: str | None = None) -> list[Span]:
    found = jaeger.trace(f"{ids.trace_id(dag_id, run_id):032x}") or []
    return [s for s in found if task_id is None or s.attributes.get("task_id") == task_id]


def settled(reads: dict[str, Callable[[], Any]], want: dict[str, Any]) -> dict[str, Any]:
    """Wait until every reading equals what is wanted (or LANDING_TIMEOUT), then SETTLE_S more; the
    readings then (a late duplicate shows)."""
    poll(lambda: {name: read() for name, read in reads.items()}, lambda got: got == want,
         timeout=LANDING_TIMEOUT, interval=2, default={})
    time.sleep(SETTLE_S)
    return {name: read() for name, read in reads.items()}


def test_burst_of_mapped_failures_is_exact_in_every_store(airflow):
    dag_id = DAGS["burst"]
    run_id = airflow.trigger(dag_id)
    assert airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT) == "failed"
    tis = airflow.task_instances(dag_id, run_id)
    assert sorted(ti["map_index"] for ti in tis if ti["task_id"] == "explode") == list(range(BURST_SIZE))
    assert {ti["state"] for ti in tis} == {"failed"}
    per_worker = {name: len(airflow.workloads(name, dag_id)) for name in WORKERS}
    print(f"\ntries per worker: {per_worker}")
    assert all(per_worker.values()), per_worker

    assert sorted(ti["map_index"] for ti in tis if ti["task_id"] == "lost") == list(range(LOST_SIZE))

    reads: dict[str, Callable[[], Any]] = {}
    want: dict[str, Any] = {}
    for task_id, size in (("explode", BURST_SIZE), ("lost", LOST_SIZE)):
        reads[f"{task_id} Prometheus"] = lambda t=task_id: counted(dag_id, t, "failed")
        reads[f"{task_id} VictoriaLogs"] = lambda t=task_id: sorted(int(e["map_index"])
                                                                    for e in terminal_events(run_id, t))
        reads[f"{task_id} Jaeger"] = lambda t=task_id: sorted(int(s.attributes["map_index"])
                                                              for s in spans(dag_id, run_id, t))
        want.update({f"{task_id} Prometheus": size, f"{task_id} VictoriaLogs": list(range(size)),
                     f"{task_id} Jaeger": list(range(size))})
    seen = settled(reads, want)
    traces = su.jaeger_search({"dag_id": dag_id})
    print({name: value if isinstance(value, float) else f"{len(value)} ({len(set(value))} map indexes)"
           for name, value in seen.items()}, f"{len(traces)} trace(s) for the run")
    assert seen == want
    # Celery prefork: each try's task process built its own pipeline (no pool child's was inherited and
    # shared by the tries it forked), and the lost tries were reported by the scheduler alone.
    assert len({e["service.instance.id"] for e in terminal_events(run_id, "explode")}) == BURST_SIZE
    assert len({e["service.instance.id"] for e in terminal_events(run_id, "lost")}) == 1
    assert [t["traceID"] for t in traces] == [f"{ids.trace_id(dag_id, run_id):032x}"]


def test_worker_killed_mid_run_loses_nothing_the_finished_tries_sent(airflow):
    dag_id = DAGS["slow"]
    run_id = airflow.trigger(dag_id)

    # worker1 has finished tries (it took more than one wave) and a try of its second wave is running (its
    # task process started: Airflow has it running).
    def second_wave_running() -> list[int]:
        taken = airflow.workloads("worker1", dag_id)
        running = {ti["map_index"] for ti in airflow.task_instances(dag_id, run_id) if ti["state"] == "running"}
        return [index for index in taken[CONCURRENCY:] if index in running]

    su.wait_until(second_wave_running, timeout=300, interval=0.5, what="worker1 running its second wave")
    airflow.kill("worker1")
    time.sleep(3)
    airflow.start_worker("worker1", CONCURRENCY)
    assert airflow.wait_for_run(dag_id, run_id, timeout=RUN_TIMEOUT) == "success"
    tis = airflow.task_instances(dag_id, run_id)
    assert len(tis) == SLOW_SIZE and {ti["state"] for ti in tis} == {"success"}
    retried = [ti for ti in tis if ti["try_number"] > 1]
    assert retried, "no try was running on the killed worker"

    # Every try that finished in a worker reported success exactly once, in every store.
    tries = sorted((ti["map_index"], ti["try_number"]) for ti in tis)
    seen = settled({
        "Prometheus": lambda: counted(dag_id, "work", "success"),
        "VictoriaLogs": lambda: sorted((int(e["map_index"]), int(e["try_number"]))
                                       for e in terminal_events(run_id) if e["state"] == "success"),
        "Jaeger": lambda: sorted((int(s.attributes["map_index"]), int(s.attributes["try_number"]))
                                 for s in spans(dag_id, run_id, "work") if s.attributes.get("state") == "success"),
    }, {"Prometheus": SLOW_SIZE, "VictoriaLogs": tries, "Jaeger": tries})
    killed = [e for e in terminal_events(run_id) if e["state"] != "success"]
    print(f"\nworker1 killed: {len(retried)} tries retried; successes: Prometheus {seen['Prometheus']:g} of "
          f"{SLOW_SIZE}, {len(seen['VictoriaLogs'])} events, {len(seen['Jaeger'])} spans; killed tries reported "
          f"as {dict(Counter(e['state'] for e in killed))}")
    assert seen == {"Prometheus": SLOW_SIZE, "VictoriaLogs": tries, "Jaeger": tries}
    # The killed tries: whatever the scheduler reported for them, once each.
    assert len({(e["map_index"], e["try_number"]) for e in killed}) == len(killed)
    # Nothing waits in a spool: what the killed worker's finished tries had not delivered, its next tries did.
    left = {name: sorted(p.name for p in airflow.spool_dir(name).glob("*") if not p.name.startswith("."))
            for name in WORKERS}
    assert left == {name: [] for name in WORKERS}
