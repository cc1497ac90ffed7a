"""Issue 17: `airflow dags test <dag> --use-executor` (LocalExecutor) must always return, plugin on.

It hung at LocalExecutor shutdown in about 2 runs of 5 with a live OTLP endpoint: a race in Airflow's
LocalExecutor.end() that the plugin's flush at the DAG run's end made likely (docs/reliability.md; the race
itself and the plugin's guard: test_local_executor_race.py). RUNS runs catch a 40 %
hang with probability 1 - 0.6**10 > 99.3 %; each run is bounded and a run over its bound fails the test with
the processes still alive at that moment. The endpoint is the stack's Collector, and each run's DAG-run event
must reach VictoriaLogs, so the plugin really exported during every run.

Own Airflow home (and api-server port): a scheduler started by other tests must not pick up these runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from testkit import stackutil
from testkit.airflow_local import AIRFLOW, AirflowLocal
from tests.airflow.conftest import ROOT

pytestmark = [pytest.mark.airflow, pytest.mark.stack]

DAG = "raise_one"
RUNS = 10
# A run takes 7-16 s on a free 2-core machine (45-75 s with ~50 other processes on it); the hang was forever.
RUN_TIMEOUT = 180


@pytest.fixture(scope="module")
def airflow_x(tmp_path_factory, stack, airflow_database) -> Iterator[AirflowLocal]:
    home = tmp_path_factory.mktemp("airflow_executor")
    local = AirflowLocal(home, ROOT / "tests" / "airflow" / "dags_executor", port=28082, extra_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "AIRFLOW__OTEL_PLUGIN__ENABLED": "true",
        "AIRFLOW__OTEL_PLUGIN__JSON_PATH": str(home / "events.jsonl"),
    }, database_url=airflow_database("airflow_executor"))
    local.start("api-server")  # the LocalExecutor's task processes talk to the Execution API
    yield local
    local.stop()


def _processes(pgid: int) -> str:
    return subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(pgid)],
                          capture_output=True, text=True).stdout


def _run_once(af: AirflowLocal, n: int) -> tuple[float, str]:
    out = af.home / "logs" / f"dags_test_{n}.log"
    with open(out, "wb") as log:
        began = time.monotonic()
        proc = subprocess.Popen([AIRFLOW, "dags", "test", DAG, "--use-executor"], env=af.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            alive = _processes(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            tail = "\n".join(out.read_text(errors="replace").splitlines()[-15:])
            pytest.fail(f"run {n}: `airflow dags test {DAG} --use-executor` did not return in {RUN_TIMEOUT} s "
                        f"(issue 17). Still alive:\n{alive}\nlast output:\n{tail}")
    text = out.read_text(errors="replace")
    assert code == 1, f"run {n}: exit {code} (the DAG fails by design: 1)\n{text[-2000:]}"
    assert "Shutting down LocalExecutor" in text, f"run {n} did not use the LocalExecutor"
    return time.monotonic() - began, text


def test_dags_test_with_the_local_executor_always_returns(airflow_x) -> None:
    durations = []
    for n in range(RUNS):
        seconds, _ = _run_once(airflow_x, n)
        durations.append(round(seconds, 1))
    events = [json.loads(line) for line in (airflow_x.home / "events.jsonl").read_text().splitlines()]
    run_ids = {e["run_id"] for e in events if e["event"] == "dag_run" and e["state"] == "failed"}
    assert len(run_ids) == RUNS, f"one failed DAG-run event per run; got {len(run_ids)} ({durations} s)"
    # The endpoint was live and took the plugin's exports: every run's DAG-run event is in VictoriaLogs.
    query = f'event:dag_run AND dag_id:"{DAG}" AND state:failed'
    stored = stackutil.wait_until(lambda: {r["run_id"] for r in stackutil.logsql(query)} & run_ids,
                                  lambda found: found == run_ids, timeout=60, what="DAG-run events")
    assert stored == run_ids
    print(f"{RUNS} runs of `dags test --use-executor`, seconds each: {durations}")
