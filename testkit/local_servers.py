"""PostgreSQL and Redis from the Debian packages, run as local processes for real-Airflow tests.

Airflow 2.x refuses SQLite with any executor but Sequential/Debug, so its LocalExecutor run needs
PostgreSQL; CeleryExecutor needs a broker (Redis). Both run from a private directory on a private port,
never the system's service, and stop with the test session. Install them with ``compose/apt_deps.sh``.

Usage::

    with LocalPostgres(Path("/tmp/pg"), port=25432) as pg:
        url = pg.sqlalchemy_url("airflow")        # postgresql+psycopg2://postgres@127.0.0.1:25432/airflow
    with LocalRedis(Path("/tmp/redis"), port=26379) as redis:
        broker = redis.url                       # redis://127.0.0.1:26379/0

PostgreSQL will not run as root: when the tests run as root, its directory belongs to the ``postgres``
user the Debian package creates and its commands run through ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}); see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"port {port} not open after {timeout:.0f} s; see {log}")


def _stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class LocalPostgres:
    def __init__(self, directory: Path | None = None, port: int = 25432) -> None:
        # Not under pytest's tmp dirs: those are 0700 root, which the postgres user cannot enter.
        self.directory = Path(directory or tempfile.mkdtemp(prefix="otel-pg-")).resolve()
        self.port = port
        self.proc: subprocess.Popen | None = None
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed: run compose/apt_deps.sh (Debian package postgresql)")
        self.bin = Path(bins[-1]).parent
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._as_postgres, *cmd], check=True, capture_output=True, timeout=120)

    def start(self) -> LocalPostgres:
        data = self.directory / "data"
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        if not (data / "PG_VERSION").exists():
            self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        log = self.directory / "postgres.log"
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*self._as_postgres, str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.directory), "-c", "max_connections=200", "-c", "fsync=off"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_port(self.port, self.proc, log)
        return self

    def create_database(self, name: str) -> None:
        deadline = time.monotonic() + 30
        while True:  # the port opens a moment before the server accepts connections
            try:
                self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
                return
            except subprocess.CalledProcessError as exc:
                if b"already exists" in exc.stderr:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"createdb {name}: {exc.stderr.decode(errors='replace')}") from exc
                time.sleep(0.5)

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        """A "fast" shutdown (SIGINT) of the whole process group: ``runuser`` exits on the signal without
        passing it on, which left the server running, orphaned, after every session."""
        if self.proc is None:
            return
        pid_file = self.directory / "data" / "postmaster.pid"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 20
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            if pid_file.exists():
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalRedis:
    def __init__(self, directory: Path, port: int = 26379) -> None:
        self.directory = directory.resolve()
        self.port = port
        self.proc: subprocess.Popen | None = None
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run compose/apt_deps.sh (Debian package redis-server)")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> LocalRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "redis.log"
        with open(log, "ab") as out:
            # appendonly: a broker restart keeps queued tasks, as a production broker would.
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                 "--appendonly", "yes", "--save", ""],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_port(self.port, self.proc, log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
