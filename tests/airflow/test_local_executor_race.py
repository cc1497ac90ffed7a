"""Issue 17's cause, shown on Airflow's own LocalExecutor, and the guard that removes it.

``LocalExecutor.end()`` (Airflow 3) checks each worker is alive just before putting its pill; a worker that
took an earlier pill and already exited is skipped, so one live worker gets no pill and ``end()`` joins it
forever. A delay of the executor's thread before each check (a busy CPU, another thread holding the GIL)
makes that likely. Without the guard such a delay hangs end(); with otel_plugin's guard (one pill per live
worker, counted before any is sent) every end() returns. Real executor, real forked workers (16, idle), each
run in its own process (tests/airflow/executor_race.py); no scheduler, database or stack needed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.airflow.conftest import ROOT

pytestmark = pytest.mark.airflow  # Airflow 3 only: not in the .venv-af2 pass (Makefile AF2_TESTS)

ROUNDS = 5


def rounds_hung(tmp_path, guard: bool, delay: float, rounds: int = ROUNDS, order: str = "reversed"
                ) -> tuple[int, str]:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run([sys.executable, "-m", "tests.airflow.executor_race", "1" if guard else "0",
                          str(delay), str(rounds), order], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=rounds * 60 + 120)
    found = re.search(r"^hung=(\d+) rounds=(\d+)$", out.stdout, re.MULTILINE)
    assert found, f"exit {out.returncode}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return int(found.group(1)), out.stdout


def test_without_the_guard_a_delayed_executor_thread_hangs_end(tmp_path) -> None:
    # In Airflow's own order the race needs the queue's wait order to differ from the check order (50 ms per
    # check hung 5 of 5 end() calls one time, 1 of 2 another); checked in the reverse of the fork order, the
    # first pills go to the workers checked last, every time. At least one must hang, or this test no longer
    # shows the race (and the guard below proves nothing).
    hung, out = rounds_hung(tmp_path, guard=False, delay=0.1, rounds=2)
    assert hung >= 1, f"Airflow's LocalExecutor.end() no longer hangs with a delayed thread:\n{out}"


@pytest.mark.parametrize("delay", [0.005, 0.02, 0.05])
def test_with_the_guard_end_always_returns(tmp_path, delay: float) -> None:
    hung, out = rounds_hung(tmp_path, guard=True, delay=delay)
    assert hung == 0, out
