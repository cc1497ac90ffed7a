"""OTLP/gRPC against the real Collector: real task processes (testkit/taskproc) send over gRPC to
the stack's Collector on 4317 and every store holds exactly what was sent; a payload spooled while the
Collector was unreachable over HTTP is replayed over gRPC; a task exits within its budget when nothing answers
on the gRPC port; OTEL_SDK_DISABLED=true records nothing. mTLS: a second Collector requiring a client
certificate signed by a CA generated here (collector/overlays/auth.yaml's TLS switch plus ``client_ca_file``)
refuses both protocols without the certificate, which keeps the telemetry in the spool, and accepts them
with it."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from otel_plugin.core import ids
from testkit import harness as h
from testkit import stackutil as su
from tests.integration import test_collector_validate as collector_tests
from tests.reliability.test_collector_down import EXIT_SLACK_S

pytestmark = pytest.mark.stack
otelcol = collector_tests.otelcol
GRPC = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}


@pytest.fixture
def run(request: pytest.FixtureRequest) -> tuple[str, str]:
    uid = uuid.uuid4().hex[:10]
    return f"grpc_{request.node.name[5:25].strip('_[]')}_{uid}", f"manual__{uid}"


def collector_grpc() -> str:
    """The stack Collector's OTLP/gRPC receiver (compose/stack.sh: 4317 beside HTTP's 4318)."""
    return su.COLLECTOR_OTLP_HTTP.rsplit(":", 1)[0] + ":4317"


def test_task_processes_over_grpc_arrive_exactly_once(stack: None, tmp_path: Path, run: tuple[str, str]) -> None:
    dag_id, run_id = run
    env = h.plugin_env(tmp_path / "spool", collector_grpc(), **GRPC)
    h.run_tasks(h.task_specs(dag_id, run_id, ["a", "b", "c"], dag_run="success"), env)
    assert h.spool_files(tmp_path / "spool") == {}
    assert h.wait_exactly(dag_id, run_id, h.expected_for(3)) == h.expected_for(3)


def test_spooled_over_http_then_replayed_over_grpc(stack: None, tmp_path: Path, run: tuple[str, str]) -> None:
    dag_id, run_id = run
    spool = tmp_path / "spool"
    closed = f"http://127.0.0.1:{h.free_port()}"  # nothing listens: refused at once
    h.run_tasks(h.task_specs(dag_id, run_id, ["a", "b"], dag_run="success"), h.plugin_env(spool, closed))
    assert h.spooled_records(spool) == {"logs": 5, "traces": 3}
    replayed = subprocess.run([sys.executable, "-m", "otel_plugin", "replay", "--timeout", "30"],
                              env=h.plugin_env(spool, collector_grpc(), **GRPC), cwd=su.ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
    assert replayed.returncode == 0, replayed.stderr
    assert h.spool_files(spool) == {}
    assert h.wait_exactly(dag_id, run_id, h.expected_for(2)) == h.expected_for(2)


def test_grpc_collector_that_never_answers_costs_the_budget_not_more(tmp_path: Path, run: tuple[str, str]) -> None:
    dag_id, run_id = run
    spool = tmp_path / "spool"
    with h.BlackHole() as hole:  # accepts TCP connections, never speaks HTTP/2
        env = h.plugin_env(spool, hole.url, budget=1.0, **GRPC)
        (done,) = h.run_tasks(h.task_specs(dag_id, run_id, ["a"]), env)
    # The HTTP test's bound (tests/reliability/test_collector_down.py) plus gRPC core's shutdown, which waits
    # up to about 1 s for a connection still in its handshake (measured here: 1.0 s vs 0.3 s for a refused port).
    bare = h.bare_exit_delay(tmp_path / "bare-spool")
    assert done.exit_delay <= 1.0 + bare + EXIT_SLACK_S + 1.0, (done, bare)
    assert h.spooled_records(spool) == {"logs": 2, "traces": 1} and h.spool_files(spool)["metrics"] == 1


def test_otel_sdk_disabled_records_nothing(stack: None, tmp_path: Path, run: tuple[str, str]) -> None:
    dag_id, run_id = run
    env = h.plugin_env(tmp_path / "spool", collector_grpc(), OTEL_SDK_DISABLED="true", **GRPC)
    h.run_tasks(h.task_specs(dag_id, run_id, ["a"], dag_run="success"), env)
    # A control run in the same way but enabled arrives; the disabled one must still be absent after it.
    control_run = f"{run_id}_control"
    h.run_tasks(h.task_specs(dag_id, control_run, ["a"], dag_run="success"),
                h.plugin_env(tmp_path / "spool2", collector_grpc(), **GRPC))
    h.wait_exactly(dag_id, control_run, h.expected_for(1), settle=3)
    assert su.event_count(f'run_id:"{run_id}"') == 0 and su.span_count([ids.trace_id(dag_id, run_id, 0)]) == 0
    assert su.finished_total(dag_id) == 1  # the control run's only
    assert not (tmp_path / "spool").exists()


# --- mTLS ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, both signed by the CA (PEM)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        cert_file, key_file = directory / f"{name}.pem", directory / f"{name}-key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_file, key_file

    def build(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
              signer: ec.EllipticCurvePrivateKey, ca: bool, usage: x509.ObjectIdentifier | None) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if usage is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if usage == ExtendedKeyUsageOID.SERVER_AUTH:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("airflow-otel test CA", ca_key, None, ca_key, True, None)
    ca_file, _ = write("ca", ca_cert, ca_key)
    server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = write("server", build("127.0.0.1", server_key, ca_cert.subject, ca_key, False,
                                   ExtendedKeyUsageOID.SERVER_AUTH), server_key)
    client = write("client", build("airflow-worker", client_key, ca_cert.subject, ca_key, False,
                                   ExtendedKeyUsageOID.CLIENT_AUTH), client_key)
    return Pki(ca_file, *server, *client)


@pytest.fixture(scope="module")
def mtls(otelcol: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[collector_tests.Instance, Pki]]:
    workdir = tmp_path_factory.mktemp("mtls")
    pki = make_pki(workdir)
    env = {"OTELCOL_TLS_ENABLED": "true", "OTELCOL_TLS_CERT_FILE": str(pki.server_cert),
           "OTELCOL_TLS_KEY_FILE": str(pki.server_key)}
    # client_ca_file: the receivers then require a client certificate signed by this CA (mTLS).
    require_client = [f"yaml:receivers::otlp::protocols::{p}::tls::client_ca_file: {pki.ca}" for p in ("grpc", "http")]
    configs = [*collector_tests.COMBINATIONS["local+auth"], *require_client]
    proc, instance = collector_tests.start_collector(otelcol, workdir / "collector", env, configs)  # type: ignore[arg-type]
    yield instance, pki
    collector_tests.stop(proc)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_mtls_without_client_certificate_spools_and_with_it_delivers(
    mtls: tuple[collector_tests.Instance, Pki], tmp_path: Path, run: tuple[str, str], protocol: str
) -> None:
    instance, pki = mtls
    dag_id, run_id = run
    spool = tmp_path / "spool"
    port = instance.grpc if protocol == "grpc" else instance.http
    common = {"OTEL_EXPORTER_OTLP_PROTOCOL": protocol, "OTEL_EXPORTER_OTLP_CERTIFICATE": str(pki.ca),
              "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{instance.token}"}
    no_cert = h.plugin_env(spool, f"https://127.0.0.1:{port}", **common)
    h.run_tasks(h.task_specs(dag_id, run_id, ["a"]), no_cert)
    assert h.spooled_records(spool) == {"logs": 2, "traces": 1} and h.spool_files(spool)["metrics"] == 1

    with_cert = {**no_cert, "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": str(pki.client_cert),
                 "OTEL_EXPORTER_OTLP_CLIENT_KEY": str(pki.client_key)}
    replayed = subprocess.run([sys.executable, "-m", "otel_plugin", "replay", "--timeout", "30"], env=with_cert,
                              cwd=su.ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert replayed.returncode == 0, replayed.stderr
    assert h.spool_files(spool) == {}
    h.run_tasks(h.task_specs(dag_id, run_id, ["b"]), with_cert)  # and a task with the certificate sends directly
    assert h.spool_files(spool) == {}
    assert su.wait_until(lambda: finished(instance, dag_id), ok=lambda v: v == 2, timeout=30, what="count") == 2


def finished(instance: collector_tests.Instance, dag_id: str) -> float:
    """Task tries counted by the second Collector's own prometheus exporter (no Prometheus scrapes it)."""
    text = requests.get(f"http://127.0.0.1:{instance.exporter}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(h.FINISHED + "{") and f'dag_id="{dag_id}"' in line)
