"""One process that starts Airflow's LocalExecutor (real forked workers, idle) and ends it, ROUNDS times.

    python -m tests.airflow.executor_race GUARD DELAY ROUNDS [ORDER] [PARALLELISM]

GUARD 1 installs otel_plugin's executor guard first. DELAY seconds are added before each of the executor's
worker liveness checks: what a busy CPU or another thread holding the GIL does to the executor's thread.
ORDER ``reversed`` makes end() check the workers in the reverse of the order they were forked, which is
about the order they wait on the queue (so the earliest pills go to the workers checked last: the race
every time); ``spawn`` (the default) leaves Airflow's order, where the race needs the two orders to differ.
Prints one line per round that did not return within END_TIMEOUT (its workers are then killed) and a last
line ``hung=N rounds=R``. AIRFLOW_HOME must be set (Airflow writes its default config there).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time

END_TIMEOUT = 20.0
SETTLE_S = 1.0  # the forked workers reach activity_queue.get()


def _end(executor: object, ended: threading.Event) -> None:
    executor.end()  # type: ignore[attr-defined]
    ended.set()


def main(guard: bool, delay: float, rounds: int, order: str, parallelism: int) -> int:
    from airflow.executors.local_executor import LocalExecutor

    if guard:
        from otel_plugin.airflow import executor_guard

        assert executor_guard.install(), "the guard did not recognise Airflow's LocalExecutor"
    if delay:
        is_alive = multiprocessing.Process.is_alive

        def slow_is_alive(self: multiprocessing.Process) -> bool:
            time.sleep(delay)
            return is_alive(self)

        multiprocessing.Process.is_alive = slow_is_alive  # type: ignore[method-assign]
    hung = 0
    for n in range(rounds):
        executor = LocalExecutor(parallelism=parallelism)
        executor.start()
        time.sleep(SETTLE_S)
        if order == "reversed":
            executor.workers = dict(reversed(list(executor.workers.items())))
        ended = threading.Event()
        threading.Thread(target=_end, args=(executor, ended), daemon=True).start()
        if ended.wait(END_TIMEOUT):
            continue
        hung += 1
        stuck = [pid for pid, proc in executor.workers.items() if proc._popen and proc._popen.poll() is None]
        print(f"round {n}: end() still waiting after {END_TIMEOUT:.0f} s, {len(stuck)} of {parallelism} "
              f"workers alive", flush=True)
        for pid in stuck:
            os.kill(pid, signal.SIGKILL)
        ended.wait(END_TIMEOUT)
    print(f"hung={hung} rounds={rounds}", flush=True)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args[0] == "1", float(args[1]), int(args[2]), args[3] if len(args) > 3 else "spawn",
                  int(args[4]) if len(args) > 4 else 16))
