"""Run a real Airflow 3 (LocalExecutor; PostgreSQL given a ``database_url``, else SQLite) as local processes
with the plugin, for tests and the demo; ``Airflow2Local`` does the same for Airflow 2.x (PostgreSQL, the
scheduler alone).

Usage::

    with AirflowLocal(home=Path(".stack/airflow"), dags=Path("demo/dags"), port=28080) as af:
        af.start(*af.COMPONENTS)              # api-server, scheduler, dag-processor
        run_id = af.trigger("demo_etl")
        af.wait_for_run("demo_etl", run_id, timeout=180)

    local_for_installed_airflow(home, dags, database_url=...)   # whichever class fits the installed Airflow

    with CeleryAirflowLocal(home, dags, broker_url=redis.url, port=28081) as af:   # CeleryExecutor
        af.start(*af.COMPONENTS)
        af.start_worker("worker1", concurrency=6)   # each worker with its own spool, as each worker pod has

Every process gets the same environment: the JWT secret the workers and the api-server share, the Execution
API URL, the plugin's OTLP endpoint. Logs go to ``<home>/logs/<process>.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def installed_major() -> int:
    """The major version of the Airflow installed beside this Python (2 or 3), without importing it."""
    from importlib.metadata import version

    return int(version("apache-airflow").split(".", 1)[0])


def _session(sid: int) -> list[int]:
    """Pids of the processes in session ``sid`` (its leader included)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
    return pids


class AirflowLocal:
    COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor")

    def __init__(self, home: Path, dags: Path, port: int = 28080, extra_env: dict[str, str] | None = None,
                 database_url: str | None = None) -> None:
        self.home = home.resolve()
        self.database_url = database_url
        self.done_migrating = False
        self.dags = dags.resolve()
        self.port = port
        self.processes: dict[str, subprocess.Popen] = {}
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        secret_file = self.home / "jwt_secret"
        if not secret_file.exists():
            secret_file.write_text(secrets.token_hex(64))
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            # A task's supervisor gives up on the api-server after 5 tries of 5 s by default and fails the task:
            # on 2 cores shared with Spark JVMs (demo_spark, the e2e Spark test) and other tests, the api-server
            # was measured answering later than that. 30 s per try.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            # PostgreSQL when given (the tests): with SQLite, one writer locks the whole database, and the
            # api-server's audit log commits on its event loop (airflow/api_fastapi/logging/decorators.py), so a
            # REST write waiting for that lock stalls the other requests, among them the one holding it, until
            # the busy timeout ends the wait with "database is locked" (500s; most likely `dags test` exiting 1).
            # SQLite (the demo): a 30 s busy timeout instead of 5 s, for a loaded machine.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url or f"sqlite:///{self.home / 'airflow.db'}?timeout=30",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": secret_file.read_text(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Spark DAGs (demo_spark, the e2e Spark test): spark-submit and the python3 its driver runs come
            # from this venv (pyspark, the plugin), and Spark runs in-process on one core.
            "PATH": f"{Path(AIRFLOW).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_CONN_SPARK_LOCAL": json.dumps({"conn_type": "spark", "host": "local[1]"}),
            **(extra_env or {}),
        }

    def __enter__(self) -> AirflowLocal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """Run an ``airflow`` CLI command; its stdout, or (with check) a RuntimeError with its output."""
        done = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def migrate(self) -> None:
        self.cli("db", "migrate")
        self.done_migrating = True

    def _migrated(self) -> bool:
        return self.done_migrating or (self.database_url is None and (self.home / "airflow.db").exists())

    def start(self, *components: str, timeout: float = 300) -> None:  # minutes on a loaded machine
        """Start long-running components (api-server, scheduler, dag-processor); waits for the api-server
        (up to ``timeout`` seconds)."""
        if not self._migrated():
            self.migrate()
        for name in components:
            self.spawn(name, [name])
        if "api-server" in components:
            self._wait_http(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout)

    def spawn(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``airflow <args>`` as process ``name`` (its own session, log in logs/<name>.log), unless running."""
        if name in self.processes and self.processes[name].poll() is None:
            return self.processes[name]
        log = open(self.home / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.processes[name] = subprocess.Popen(
            [AIRFLOW, *args], env={**self.env, **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self.processes[name]

    def _wait_http(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes.get("api-server") and self.processes["api-server"].poll() is not None:
                raise RuntimeError(f"api-server exited; see {self.home / 'logs' / 'api-server.log'}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"{url} not ready after {timeout:.0f} s")

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        self.processes.clear()

    def kill(self, name: str) -> None:
        """SIGKILL a process and everything in its session, as when its container dies (``spawn`` it again).

        The session, not the process group: a task supervisor puts its task process in a group of its own
        (``setpgid``), so a group kill would leave the task running, orphaned, as no container death does."""
        proc = self.processes.pop(name)
        for _ in range(3):  # a process forking while the first round lands: its child is in the session too
            for pid in _session(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def api(self, method: str, path: str, body: dict | None = None) -> dict:
        """Call the REST API (the simple auth manager runs with every user an admin, so no token)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/v2/{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"},
        )
        # A GET is safe to repeat: on a loaded machine the api-server can miss one 30 s answer.
        for attempt in range(3 if method == "GET" else 1):
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return json.load(response)
            except TimeoutError:
                if attempt == (2 if method == "GET" else 0):
                    raise
        raise AssertionError("unreachable")

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        """Until the dag-processor has parsed the DAG into the database."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.api("GET", f"dags/{dag_id}")
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout:.0f} s; see {self.home / 'logs'}")

    def trigger(self, dag_id: str, run_id: str | None = None, conf: dict | None = None) -> str:
        """Create a manual run; its run id. The id is chosen here, so that a 5xx (a database write that failed
        in the api-server) can be retried safely: a run created after all answers the retry with 409."""
        run_id = run_id or f"manual__{datetime.now(timezone.utc).isoformat()}"
        body = {"logical_date": None, "conf": conf or {}, "dag_run_id": run_id}
        for attempt in range(3):
            try:
                return self.api("POST", f"dags/{dag_id}/dagRuns", body)["dag_run_id"]
            except urllib.error.HTTPError as exc:
                if exc.code == 409 and attempt:
                    return run_id
                if exc.code < 500 or attempt == 2:
                    raise
            time.sleep(2)
        raise AssertionError("unreachable")

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        """The run as the REST API shows it (state, start_date, end_date, ...)."""
        return self.api("GET", f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.dag_run(dag_id, run_id)["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """The run's task instances (one per map index once a task is expanded), at most 100 (page limit)."""
        path = f"dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances?limit=100"
        return self.api("GET", path)["task_instances"]

    def ended_tries(self, dag_id: str, run_id: str) -> int:
        """Task tries the run has ended (one event and span each): every try, and once a task that never ran."""
        return sum(max(ti["try_number"], 1) for ti in self.task_instances(dag_id, run_id))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300, poll: float = 2) -> str:
        """Wait until the run finishes; returns its final state. An api-server that answers no poll within its
        30 s (a machine loaded far beyond its cores) only delays the answer, until the deadline."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            try:
                state = self.run_state(dag_id, run_id)
            except (TimeoutError, urllib.error.URLError):  # one slow answer of a loaded api-server: ask again
                continue
            if state in ("success", "failed"):
                return state
            time.sleep(poll)
        raise TimeoutError(f"{dag_id} {run_id} still {state} after {timeout:.0f} s; see {self.home / 'logs'}")


class Airflow2Local(AirflowLocal):
    """Airflow 2.x: the scheduler parses the DAGs and runs the LocalExecutor; there is no api-server. 2.x
    refuses SQLite with LocalExecutor, so the metadata database is PostgreSQL (``database_url``); runs are
    triggered with the CLI and read from that database (the REST API would need the webserver)."""

    COMPONENTS = ("scheduler",)

    def __init__(self, home: Path, dags: Path, database_url: str, port: int = 28080,
                 extra_env: dict[str, str] | None = None) -> None:
        super().__init__(home, dags, port, {
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            **(extra_env or {}),
        }, database_url)
        from sqlalchemy import create_engine

        self.engine = create_engine(database_url, pool_pre_ping=True)

    def stop(self) -> None:
        super().stop()
        self.engine.dispose()

    def _rows(self, sql: str, **params: object) -> list[dict]:
        from sqlalchemy import text

        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(sql), params)]

    def wait_for_dag(self, dag_id: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._rows("SELECT 1 FROM serialized_dag WHERE dag_id = :dag_id", dag_id=dag_id):
                return
            time.sleep(2)
        raise TimeoutError(f"DAG {dag_id} not parsed after {timeout:.0f} s; see {self.home / 'logs'}")

    def trigger(self, dag_id: str, run_id: str | None = None, conf: dict | None = None) -> str:
        run_id = run_id or f"manual__{secrets.token_hex(8)}"
        self.cli("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf or {}))
        return run_id

    def dag_run(self, dag_id: str, run_id: str) -> dict:
        rows = self._rows("SELECT state, start_date, end_date FROM dag_run WHERE dag_id = :d AND run_id = :r",
                          d=dag_id, r=run_id)
        if not rows:
            raise LookupError(f"no run {run_id} of {dag_id}")
        return rows[0]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._rows(
            "SELECT task_id, map_index, try_number, state FROM task_instance WHERE dag_id = :d AND run_id = :r",
            d=dag_id, r=run_id,
        )


class CeleryAirflowLocal(AirflowLocal):
    """Airflow 3 with CeleryExecutor: the broker (and result backend, database 1 of the same Redis) given by
    URL; workers are ``airflow celery worker`` processes started with ``start_worker``. A worker is killed
    like any process (``kill``: its whole session, pool children and task processes included) and started
    again under the same name, with the same spool."""

    def __init__(self, home: Path, dags: Path, broker_url: str, port: int = 28080,
                 extra_env: dict[str, str] | None = None, database_url: str | None = None) -> None:
        super().__init__(home, dags, port, {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": broker_url,
            "AIRFLOW__CELERY__RESULT_BACKEND": broker_url.rsplit("/", 1)[0] + "/1",
            **(extra_env or {}),
        }, database_url)

    def spool_dir(self, worker: str) -> Path:
        return self.home / f"spool-{worker}"

    def start_worker(self, name: str, concurrency: int, queues: str | None = None,
                     extra_env: dict[str, str] | None = None) -> None:
        """``airflow celery worker`` (prefork pool of ``concurrency`` children) named ``name@<host>``, with
        its own spool directory, serving ``queues`` (comma-separated; Airflow's default queue if None);
        started again after a kill, it finds that spool."""
        args = ["celery", "worker", "--concurrency", str(concurrency), "--celery-hostname", f"{name}@%h",
                "--pid", str(self.home / f"{name}.pid"), "--skip-serve-logs", "--without-mingle",
                "--without-gossip"]
        self.spawn(name, args + (["--queues", queues] if queues else []),
                   {"AIRFLOW__OTEL_PLUGIN__SPOOL_DIR": str(self.spool_dir(name)), **(extra_env or {})})

    def workloads(self, name: str, dag_id: str) -> list[int]:
        """Map indexes of the task workloads of a DAG that worker ``name`` took from the broker, in order (its
        log, every start of it)."""
        log = (self.home / "logs" / f"{name}.log").read_text(errors="replace")
        return [int(found[1]) for line in log.splitlines()
                if "Executing workload" in line and f"dag_id='{dag_id}'" in line
                and (found := re.search(r"map_index=(-?\d+)", line))]


def local_for_installed_airflow(home: Path, dags: Path, database_url: str | None = None, port: int = 28080,
                                extra_env: dict[str, str] | None = None) -> AirflowLocal:
    """``Airflow2Local`` (needs ``database_url``) under Airflow 2.x, else ``AirflowLocal``."""
    if installed_major() == 2:
        if not database_url:
            raise ValueError("Airflow 2.x needs a database_url (it refuses SQLite with LocalExecutor)")
        return Airflow2Local(home, dags, database_url, port, extra_env)
    return AirflowLocal(home, dags, port, extra_env, database_url)
