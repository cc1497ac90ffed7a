"""The comparison systems the benchmark starts and stops itself: a Pushgateway, a StatsD exporter and a
separate Prometheus scraping both, on ports apart from the stack's. Also a socket that accepts and never
answers (the "hung Collector" of the overhead scenario).

Everything listens on 127.0.0.1 and lives in the run's scratch directory; ``Peers`` stops what it started
on exit, even after an error.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from .common import ROOT

PUSHGATEWAY_PORT = 19091
STATSD_PORT = 19125  # UDP
STATSD_WEB_PORT = 19102
PROMETHEUS_PORT = 19090
PUSHGATEWAY = f"http://127.0.0.1:{PUSHGATEWAY_PORT}"
STATSD_EXPORTER = f"http://127.0.0.1:{STATSD_WEB_PORT}"
PROMETHEUS = f"http://127.0.0.1:{PROMETHEUS_PORT}"
STATSD_SCRAPE_S = 1
# Long enough for the Pushgateway's /metrics with 100k groups; Prometheus's timeout cannot exceed it.
PUSHGATEWAY_SCRAPE_S = 10

# Airflow's own StatsD name for a finished try, turned into labels the way teams configure the exporter.
STATSD_MAPPING = """\
mappings:
  - match: "airflow.ti.finish.*.*.*"
    name: "airflow_ti_finish"
    labels: {dag_id: "$1", task_id: "$2", state: "$3"}
"""

PROMETHEUS_CONFIG = f"""\
scrape_configs:
  - job_name: pushgateway
    honor_labels: true
    scrape_interval: {PUSHGATEWAY_SCRAPE_S}s
    scrape_timeout: {PUSHGATEWAY_SCRAPE_S}s
    static_configs: [{{targets: ["127.0.0.1:{PUSHGATEWAY_PORT}"]}}]
  - job_name: statsd
    scrape_interval: {STATSD_SCRAPE_S}s
    scrape_timeout: {STATSD_SCRAPE_S}s
    static_configs: [{{targets: ["127.0.0.1:{STATSD_WEB_PORT}"]}}]
"""


class PeerError(RuntimeError):
    """A peer could not be installed or started; the message says what to do."""


def _port_free(port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        # As the Go servers do: a port whose old connections linger in TIME_WAIT is free for a listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pushgateway_binary() -> str:
    """The Debian Pushgateway, installed with apt-get when missing (root only)."""
    found = shutil.which("prometheus-pushgateway")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PeerError("prometheus-pushgateway is not installed: run `apt-get install -y prometheus-pushgateway`")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "prometheus-pushgateway"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if proc.returncode:
            raise PeerError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    found = shutil.which("prometheus-pushgateway")
    if not found:
        raise PeerError("apt-get installed prometheus-pushgateway but the binary is not on PATH")
    return found


def built_binary(name: str) -> str:
    """A binary compose/build.sh makes (built now when it is not cached yet)."""
    build = ROOT / "compose" / "build.sh"
    path = subprocess.run([build, "--path", name], capture_output=True, text=True, check=True).stdout.strip()
    if not os.access(path, os.X_OK):
        proc = subprocess.run([build, name], capture_output=True, text=True, check=False)
        if proc.returncode:
            raise PeerError(f"compose/build.sh {name} failed: {proc.stdout[-800:]}{proc.stderr[-800:]}")
    return path


def version_of(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()
    return first[0].strip() if first else "unknown"


class Peers:
    """Starts the Pushgateway, the StatsD exporter and the benchmark's own Prometheus; stops them on exit."""

    def __init__(self, scratch: Path) -> None:
        self.dir = scratch / "peers"
        self.procs: dict[str, subprocess.Popen] = {}
        self.binaries: dict[str, str] = {}

    def __enter__(self) -> Peers:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "statsd-mapping.yml").write_text(STATSD_MAPPING)
        (self.dir / "prometheus.yml").write_text(PROMETHEUS_CONFIG)
        self.binaries = {
            "pushgateway": pushgateway_binary(),
            "statsd_exporter": built_binary("statsd_exporter"),
            "prometheus": built_binary("prometheus"),
        }
        try:
            self.start_pushgateway()
            self._start("statsd_exporter", [
                f"--statsd.listen-udp=127.0.0.1:{STATSD_PORT}", "--statsd.listen-tcp=",
                f"--web.listen-address=127.0.0.1:{STATSD_WEB_PORT}",
                f"--statsd.mapping-config={self.dir / 'statsd-mapping.yml'}",
            ], f"{STATSD_EXPORTER}/metrics", [STATSD_WEB_PORT], udp=[STATSD_PORT])
            self._start("prometheus", [
                f"--config.file={self.dir / 'prometheus.yml'}", f"--storage.tsdb.path={self.dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            ], f"{PROMETHEUS}/-/ready", [PROMETHEUS_PORT])
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_pushgateway(self) -> None:
        """(Re)start the Pushgateway empty: no persistence file, so every scenario starts from zero groups."""
        self.stop("pushgateway")
        self._start("pushgateway", [f"--web.listen-address=127.0.0.1:{PUSHGATEWAY_PORT}", "--persistence.file="],
                    f"{PUSHGATEWAY}/-/ready", [PUSHGATEWAY_PORT])

    def pid(self, name: str) -> int:
        return self.procs[name].pid

    def _start(self, name: str, args: list[str], ready_url: str, tcp: list[int], udp: list[int] = ()) -> None:
        busy = [p for p in tcp if not _port_free(p)] + [p for p in udp if not _port_free(p, socket.SOCK_DGRAM)]
        if busy:
            raise PeerError(f"cannot start {name}: port(s) {busy} on 127.0.0.1 already in use")
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([self.binaries[name], *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.dir, start_new_session=True)
        log.close()
        self.procs[name] = proc
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.RequestException):
                if requests.get(ready_url, timeout=2).ok:
                    return
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.dir / f"{name}.log").read_text(errors="replace")[-1500:]
                raise PeerError(f"{name} did not become ready at {ready_url}:\n{tail}")
            time.sleep(0.2)

    def stop(self, only: str | None = None) -> None:
        for name in [only] if only else list(self.procs):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _hold_connections(sock: socket.socket) -> None:
    held = []
    while True:
        conn, _ = sock.accept()
        held.append(conn)  # never read, never answer, never close


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung Collector); yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    proc = multiprocessing.get_context("fork").Process(target=_hold_connections, args=(sock,), daemon=True)
    proc.start()
    sock.close()  # the child holds it
    try:
        yield port
    finally:
        proc.kill()
        proc.join()


def closed_port() -> int:
    """A port nothing listens on: connections are refused at once (a Collector that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
