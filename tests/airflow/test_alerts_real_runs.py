"""Alerts from real Airflow runs, delivered by the stack's Alertmanager to a webhook receiver in this test.

One Airflow deployment (api-server, scheduler, dag-processor; LocalExecutor) serves every test here, in
order: (b) a broken DAG file fires the import-error alert naming the file, and fixing it clears it; (d) the
demo's 0-row success fires its alert; (c) a run hanging past its usual duration fires the stuck-run alert
while it is still running; (a) after a scheduled DAG ran, the scheduler is killed (SIGKILL) and the "should
have succeeded by now" alert fires for that DAG within two of its schedule intervals.

DAG ids carry a per-session suffix, so alerts left firing on a shared stack by an earlier session (their
deployment is gone, its last deadlines stay) never satisfy this session's waits. Figures are printed
(pytest -s) and noted in docs/alerting.md. Cost: about 5-7 minutes, most of it waiting for the clock.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import alerting
from testkit.airflow_local import AirflowLocal

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.airflow, pytest.mark.stack]

SUFFIX = uuid.uuid4().hex[:6]
MINUTELY = f"alert_minutely_{SUFFIX}"
HANG = f"alert_hang_{SUFFIX}"
ZERO_ROWS = f"demo_zero_rows_{SUFFIX}"
INTERVAL = 60.0  # MINUTELY's schedule
PORT = 28090

DAGS = f'''
import time
from datetime import datetime, timezone

from airflow.sdk import dag, get_current_context, task

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dag(dag_id="{MINUTELY}", schedule="* * * * *", start_date=START, catchup=False)
def minutely():
    @task
    def tick() -> None:
        pass

    tick()


minutely()


@dag(dag_id="{HANG}", schedule=None, start_date=START, catchup=False)
def hang():
    @task
    def work() -> None:
        time.sleep(float(get_current_context()["dag_run"].conf.get("sleep", 0)))

    work()


hang()
'''
# Both mention airflow and dag: the dag processor's safe mode skips files that do not.
BROKEN = """from airflow.sdk import dag

raise ValueError("broken on purpose; password=hunter2")
"""
FIXED = f"""from airflow.sdk import dag


@dag(dag_id="alert_fixed_{SUFFIX}", schedule=None)
def fixed():
    pass


fixed()
"""


@pytest.fixture(scope="module")
def webhook(stack) -> Iterator[alerting.WebhookReceiver]:
    receiver = alerting.WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, webhook, airflow_database):
    home = tmp_path_factory.mktemp("airflow_alerts")
    dags = home / "dags"
    dags.mkdir()
    (dags / "alert_dags.py").write_text(DAGS)
    demo = (ROOT / "demo" / "dags" / "demo_dags.py").read_text()
    (dags / "demo_dags.py").write_text(demo.replace("demo_zero_rows", ZERO_ROWS))
    broken = dags / f"broken_{SUFFIX}.py"
    broken.write_text(BROKEN)
    local = AirflowLocal(home, dags, port=PORT, extra_env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "AIRFLOW__OTEL_PLUGIN__SCHEDULE_REPORT_INTERVAL": "5",
    }, database_url=airflow_database("airflow_alerts"))  # fmt: skip
    local.migrate()
    with socket.socket() as probe:  # a stale api-server there would answer for another database
        assert probe.connect_ex(("127.0.0.1", PORT)) != 0, f"port {PORT} is taken: stop what listens there"
    try:
        # The api-server first (tasks need its Execution API); a loaded CI machine may take minutes to start it.
        local.start("api-server", timeout=420)
        started = time.time()
        local.start("scheduler", "dag-processor")
        local.broken_file = broken  # type: ignore[attr-defined]
        local.broken_since = started  # type: ignore[attr-defined]
        yield local
    finally:
        local.stop()


def test_import_error_fires_naming_the_file_and_clears_when_it_parses(deployment, webhook):
    name = deployment.broken_file.name
    path, alert, at = webhook.wait_for(
        lambda p, a: alerting.firing("AirflowDagImportError")(p, a) and a["labels"]["filename"].endswith(name),
        timeout=600, what=f"the import error of {name}")
    assert path == "/critical" and alert["labels"]["filename"] == str(deployment.broken_file)
    print(f"(b) broken file (Airflow start) -> webhook: {at - deployment.broken_since:.0f} s")

    fixed = time.time()
    deployment.broken_file.write_text(FIXED)
    _, _, at = webhook.wait_for(alerting.resolved("AirflowDagImportError", filename=str(deployment.broken_file)),
                                timeout=600, what=f"the resolution of {name}")  # fmt: skip
    print(f"(b) fixed -> resolved at the webhook: {at - fixed:.0f} s")


def test_the_demos_zero_row_success_fires_its_alert(deployment, webhook):
    deployment.wait_for_dag(ZERO_ROWS)
    run_id = deployment.trigger(ZERO_ROWS)
    assert deployment.wait_for_run(ZERO_ROWS, run_id, timeout=600) == "success"
    ended = _time(deployment.dag_run(ZERO_ROWS, run_id)["end_date"])
    path, alert, at = webhook.wait_for(alerting.firing("AirflowTaskZeroRows", dag_id=ZERO_ROWS), timeout=180,
                                       what=f"AirflowTaskZeroRows for {ZERO_ROWS}")  # fmt: skip
    assert path == "/warning" and alert["labels"]["task_id"] in ("extract_new_orders", "load_new_orders")
    print(f"(d) 0-row run ended -> webhook: {at - ended:.0f} s")


def test_a_run_hanging_past_its_usual_duration_fires_while_still_running(deployment, webhook):
    deployment.wait_for_dag(HANG)
    for _ in range(2):  # what "usual" is: two quick successful runs
        assert deployment.wait_for_run(HANG, deployment.trigger(HANG, conf={"sleep": 0}), timeout=600) == "success"
    run_id = deployment.trigger(HANG, conf={"sleep": 900})
    started = time.time()
    _, _, at = webhook.wait_for(alerting.firing("AirflowDagRunStuck", dag_id=HANG), timeout=300,
                                    what=f"AirflowDagRunStuck for {HANG}")  # fmt: skip
    assert deployment.run_state(HANG, run_id) == "running"  # fired while the run still runs
    usual = max(_seconds(r) for r in _runs(deployment, HANG, "success"))
    print(f"(c) hung run triggered -> webhook: {at - started:.0f} s (usual {usual:.0f} s, "
          f"allowed max(3 x usual, 30 s))")


def test_killing_the_scheduler_fires_late_for_the_scheduled_dag_within_two_intervals(deployment, webhook):
    # The DAG ran on its schedule: wait for a successful scheduled run.
    def scheduled_successes() -> list[dict]:
        return [r for r in _runs(deployment, MINUTELY, "success") if r["run_type"] == "scheduled"]

    deadline = time.monotonic() + 600
    while not scheduled_successes():
        assert time.monotonic() < deadline, f"{MINUTELY} has no successful scheduled run after 600 s"
        time.sleep(5)
    scheduler = deployment.processes["scheduler"]
    os.killpg(scheduler.pid, signal.SIGKILL)
    killed = time.time()
    scheduler.wait(timeout=30)
    last = max(_time(r["run_after"]) for r in scheduled_successes())
    due = last + INTERVAL  # the first run that will never happen
    path, _, at = webhook.wait_for(alerting.firing("AirflowDagLate", dag_id=MINUTELY), timeout=420,
                                       what=f"AirflowDagLate for {MINUTELY}")  # fmt: skip
    assert path == "/critical"
    print(f"(a) scheduler killed -> webhook: {at - killed:.0f} s; missed run due -> webhook: {at - due:.0f} s")
    assert at - due <= 2 * INTERVAL, f"fired {at - due:.0f} s after the missed run was due"


def _runs(deployment, dag_id: str, state: str) -> list[dict]:
    return deployment.api("GET", f"dags/{dag_id}/dagRuns?state={state}&limit=100")["dag_runs"]


def _time(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _seconds(run: dict) -> float:
    return _time(run["end_date"]) - _time(run["start_date"])
