"""otel_plugin.airflow.executor_guard: one pill per live worker, counted before any is sent, then Airflow's
own end(); installed once, and only on Airflow 3's LocalExecutor (the race itself, on real workers:
tests/airflow/test_local_executor_race.py)."""

from __future__ import annotations

from typing import Any

from otel_plugin.airflow import executor_guard
from testkit.airflow_local import installed_major


class Worker:
    def __init__(self, alive: bool, log: list[str]) -> None:
        self.alive, self.log = alive, log

    def is_alive(self) -> bool:
        self.log.append("check")
        return self.alive


class Queue:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def put(self, item: Any) -> None:
        self.log.append(f"put {item}")


class Executor:
    def __init__(self, alive: list[bool]) -> None:
        self.log: list[str] = []
        self.activity_queue = Queue(self.log)
        self.workers = {pid: Worker(a, self.log) for pid, a in enumerate(alive)}


def test_every_live_worker_is_counted_before_the_first_pill_then_airflows_end_runs() -> None:
    ended: list[Executor] = []
    end = executor_guard._pills_first(lambda self: ended.append(self))
    ex = Executor([True, False, True, True])
    end(ex)
    assert ex.log == ["check"] * 4 + ["put None"] * 3
    assert ended == [ex]


def test_airflows_end_runs_even_if_counting_fails() -> None:
    ended: list[object] = []
    end = executor_guard._pills_first(lambda self: ended.append(self))
    broken = object()  # no workers, no queue
    end(broken)
    assert ended == [broken]


def test_installed_once_on_airflow_3_and_never_on_airflow_2() -> None:
    from airflow.executors.local_executor import LocalExecutor

    wrapped = LocalExecutor.end  # hooks fired by other tests may have installed the guard already
    before = getattr(wrapped, "__wrapped__", wrapped)
    LocalExecutor.end = before  # type: ignore[method-assign]
    try:
        if installed_major() == 3:
            assert executor_guard.install() and executor_guard.install()
            assert LocalExecutor.end is not before
            assert LocalExecutor.end.__wrapped__ is before  # type: ignore[attr-defined]
        else:  # 2.x counts its pills first and stops workers with (None, None)
            assert not executor_guard.install()
            assert LocalExecutor.end is before
    finally:
        LocalExecutor.end = wrapped  # type: ignore[method-assign]
