"""Driving the plugin as Airflow does, and reading back what the stores hold.

Every task run goes through the plugin's real listener hooks (``on_task_instance_running`` then
``on_task_instance_success``/``_failed``) with objects shaped like the task SDK's RuntimeTaskInstance, the
real private OTel pipeline and the spooling OTLP/HTTP transport, to the stack's Collector. A real task
process flushes once per task; a sender that reports many runs uses ``BatchingPipeline``, which flushes
every N task ends instead (the only difference).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace

from otel_plugin.airflow import listener
from otel_plugin.core import config, contract, ids, pipeline
from testkit import stackutil

from .common import ROOT, cpu_seconds, disk_bytes, rss_bytes

STACK_DIR = Path(os.environ.get("STACK_DIR", ROOT / ".stack"))
STACK_PROMETHEUS = stackutil.PROMETHEUS
STACK_WAIT_S = 300.0  # how long a stack service may be down (someone else's test) before the benchmark gives up
DAGS, TASKS = 50, 20
FAILED = "failed"
FINISHED = contract.TASK_FINISHED.prometheus


class TaskRunner:
    """Stands for Airflow's task runner component: ``on_starting`` gives the plugin its task-process role."""


@dataclasses.dataclass(frozen=True)
class Run:
    dag_id: str
    task_id: str
    run_id: str
    state: str
    map_index: int = -1


def task_instance(run: Run, start: dt.datetime, end: dt.datetime | None) -> SimpleNamespace:
    """The fields of a RuntimeTaskInstance that the plugin reads."""
    return SimpleNamespace(
        dag_id=run.dag_id, task_id=run.task_id, run_id=run.run_id, try_number=1, max_tries=0,
        map_index=run.map_index, state=run.state if end else "running", start_date=start, end_date=end,
        hostname="bench", queue="default", log_url=None, context_carrier=None,
        task=SimpleNamespace(task_type="PythonOperator", pool="default_pool", retries=0),
    )


def spread_runs(prefix: str, count: int) -> Iterator[Run]:
    """``count`` task runs over 50 DAGs x 20 tasks: each DAG run has its 20 tasks, DAG runs go round the 50
    DAGs, and a fixed pseudo-random 10% of the task runs fail (so every task sees both end states)."""
    for i in range(count):
        dag, task, number = (i // TASKS) % DAGS, i % TASKS, i // (TASKS * DAGS)
        yield Run(f"{prefix}_d{dag:02d}", f"t{task:02d}", f"scheduled__{number:06d}",
                  FAILED if zlib.crc32(i.to_bytes(4, "big")) % 10 == 0 else "success")


def trace_ids(runs: Iterable[Run]) -> set[int]:
    return {ids.trace_id(r.dag_id, r.run_id) for r in runs}



def begin(run: Run) -> dt.datetime:
    """A task process starts (Airflow's on_starting) and its try starts running; returns the start time."""
    listener.on_starting(TaskRunner())  # the task-process role: the end hook flushes before returning
    start = dt.datetime.now(dt.timezone.utc)
    listener.on_task_instance_running("queued", task_instance(run, start, None))
    return start


def end(run: Run, start: dt.datetime) -> None:
    """The try ends: the success or failure hook (which flushes, as in a task process)."""
    ti = task_instance(run, start, dt.datetime.now(dt.timezone.utc))
    if run.state == FAILED:
        listener.on_task_instance_failed("running", ti, error=RuntimeError("benchmark failure"))
    else:
        listener.on_task_instance_success("running", ti)


def report(run: Run) -> None:
    end(run, begin(run))


class BatchingPipeline(pipeline.Pipeline):
    """The real pipeline, flushing at every ``every``-th task end instead of at each (many runs, one process)."""

    every = 500

    def __init__(self, cfg: config.PluginConfig) -> None:
        super().__init__(cfg)
        self.calls = 0

    def flush(self, budget: float | None = None, wait: bool = True, final: bool = False,
              redeliver: bool = True) -> bool:
        self.calls += 1  # many runs in one process: not a task's exit, so no shared exit deadline
        return super().flush(budget, wait) if self.calls % self.every == 0 else True

    def flush_now(self) -> bool:
        return super().flush(wait=True)


def send_batched(runs: Iterable[Run], every: int = 500, pace: float = 0.0) -> int:
    """Report runs through one batching pipeline (in a child process); ``pace`` > 0: runs per second.
    Returns how many payloads are still in the spool at the end (0 = everything was accepted)."""
    cfg = config.get()
    assert cfg is not None, "plugin configuration is invalid"
    pipe = BatchingPipeline(cfg)
    pipe.every = every
    pipeline.install(pipe)
    began = time.monotonic()
    for n, run in enumerate(runs):
        if pace:
            delay = began + n / pace - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        report(run)
    pipe.flush_now()
    return pipe.spool.pending()


# --- reading back ------------------------------------------------------------------------------------


def finished_total(prefix: str, state: str | None = None) -> int:
    """What the stack's Prometheus holds for the plugin's task_instance.finished counter of these DAGs."""
    return stackutil.finished_total(dag_prefix=prefix, state=state)


def plugin_series(prefix: str) -> int:
    return int(stackutil.prom_value(f'count({{__name__=~"airflow_otel_.+", dag_id=~"{prefix}.*"}})') or 0)


def event_count(prefix: str, where: str = "") -> int:
    """Event records VictoriaLogs holds for these DAGs (``where``: more LogsQL filters)."""
    return stackutil.event_count(f"dag_id:{prefix}* {where}".strip())


def out_of_order_drops() -> float:
    return stackutil.delta_to_cumulative_errors()


def stack_pid(service: str) -> int:
    """The pid of a running stack service; waits (bounded) while another engineer's test has it stopped."""
    path = STACK_DIR / "run" / f"{service}.pid"
    deadline = time.monotonic() + STACK_WAIT_S
    while True:
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise SystemExit(f"stack service {service} has been down for {STACK_WAIT_S:.0f} s "
                                 "(start it with `make stack-up`)") from None
            time.sleep(1)


STORES = ("collector", "prometheus", "victorialogs", "jaeger")


def stack_cpu() -> dict[str, float]:
    return {svc: cpu_seconds(stack_pid(svc)) for svc in STORES}


def stack_rss() -> dict[str, int]:
    return {svc: rss_bytes(stack_pid(svc)) for svc in STORES}


def store_disk() -> dict[str, int]:
    return {svc: disk_bytes(STACK_DIR / svc / "data") for svc in ("victorialogs", "jaeger")}


class Restarts:
    """Notices a stack service restarted during a measurement (other engineers' reliability tests stop and
    start services of the same stack; a restarted Collector forgets its counters)."""

    def __init__(self) -> None:
        self.pids = self._pids()

    @staticmethod
    def _pids() -> dict[str, int | None]:
        pids: dict[str, int | None] = {}
        for svc in STORES:
            try:
                pids[svc] = int((STACK_DIR / "run" / f"{svc}.pid").read_text())
            except (OSError, ValueError):
                pids[svc] = None
        return pids

    def since(self) -> list[str]:
        """Services whose process changed since this object was made (or since the last call)."""
        now = self._pids()
        changed = [svc for svc in STORES if now[svc] != self.pids[svc]]
        self.pids = now
        return changed


def require_stack() -> None:
    """Wait (bounded) until every stack service is healthy; fail with the command to run if it never is
    (``make bench`` starts the stack; other engineers' tests may stop services for a while)."""
    deadline = time.monotonic() + STACK_WAIT_S
    while True:
        try:
            stackutil.stack("status")
            return
        except AssertionError as err:
            if time.monotonic() > deadline:
                raise SystemExit(f"the stack is not running: start it with `make stack-up`\n{err}") from None
            time.sleep(2)
