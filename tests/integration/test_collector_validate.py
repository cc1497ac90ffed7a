"""Our built Collector (compose/build.sh collector) on the repo's configs: `validate` accepts every
combination users run and refuses broken ones, and with overlays/auth.yaml a push without the token is
refused (HTTP 401, gRPC Unauthenticated) while one with it is accepted, also over TLS; and
collector/loadbalancer.yaml in front of two aggregators keeps every series whole at one of them.

These tests start extra Collectors on free ports (moved with --set and a yaml: config, so the repo's
files stay the single source) beside the native stack; their stores point at a closed port.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
import yaml
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from otel_plugin.core.config import parse_headers
from testkit.net import free_port
from tests.unit.deploy.test_collector_configs import TYPE_OF_MODULE

pytestmark = pytest.mark.stack

ROOT = Path(__file__).resolve().parents[2]
BUILD_SH = ROOT / "compose" / "build.sh"
BASE = ROOT / "collector" / "config.yaml"
OVERLAYS = ROOT / "collector" / "overlays"
LOADBALANCER = ROOT / "collector" / "loadbalancer.yaml"

COMBINATIONS = {
    "local": [BASE, OVERLAYS / "local.yaml"],
    "grafana": [BASE, OVERLAYS / "grafana.yaml"],
    "local+auth": [BASE, OVERLAYS / "local.yaml", OVERLAYS / "auth.yaml"],
    "grafana+auth": [BASE, OVERLAYS / "grafana.yaml", OVERLAYS / "auth.yaml"],
    "loadbalancer": [BASE, LOADBALANCER],
}
REQUIRED_ENV = {"OTELCOL_AUTH_TOKEN": "validate-only", "OTELCOL_LB_BACKENDS": "[agg-1:4317, agg-2:4317]"}


@pytest.fixture(scope="module")
def otelcol() -> Path:
    """The cached Collector binary; built first if missing (minutes, once per manifest version)."""
    build = subprocess.run([str(BUILD_SH), "collector"], capture_output=True, text=True, check=False)
    assert build.returncode == 0, f"compose/build.sh collector failed:\n{build.stdout}{build.stderr}"
    path = subprocess.run([str(BUILD_SH), "--path", "collector"], capture_output=True, text=True, check=True)
    return Path(path.stdout.strip())


def validate(otelcol: Path, configs: list[Path], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "LOKI_", "TEMPO_"))}
    args = [str(otelcol), "validate", *(f"--config={c}" for c in configs)]
    return subprocess.run(args, env={**clean, **env}, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("name", COMBINATIONS)
def test_validate_accepts(otelcol: Path, name: str) -> None:
    result = validate(otelcol, COMBINATIONS[name], REQUIRED_ENV)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("name", "unset", "error"),
    [
        ("local+auth", "OTELCOL_AUTH_TOKEN", "no bearer token provided"),
        ("loadbalancer", "OTELCOL_LB_BACKENDS", "no endpoints specified for the static resolver"),
    ],
)
def test_validate_refuses_a_missing_required_variable(otelcol: Path, name: str, unset: str, error: str) -> None:
    env = {k: v for k, v in REQUIRED_ENV.items() if k != unset}
    result = validate(otelcol, COMBINATIONS[name], env)
    assert result.returncode != 0
    assert error in result.stderr


def test_validate_refuses_tls_without_certificate(otelcol: Path) -> None:
    result = validate(otelcol, COMBINATIONS["local+auth"], {**REQUIRED_ENV, "OTELCOL_TLS_ENABLED": "true"})
    assert result.returncode != 0
    assert "must include both certificate and key" in result.stderr


def test_component_types_match_the_binary(otelcol: Path) -> None:
    """The unit tests' module -> type table is what the binary itself reports."""
    listing = yaml.safe_load(subprocess.run([str(otelcol), "components"], capture_output=True, check=True).stdout)
    reported = {
        entry["module"].split()[0].rsplit("/", 1)[-1]: entry["name"]
        for kind in ("receivers", "processors", "exporters", "extensions")
        for entry in listing[kind]
    }
    assert len(reported) >= 10, reported
    assert {module: TYPE_OF_MODULE.get(module) for module in reported} == reported


# --- a second, token-protected Collector --------------------------------------------------------------


@dataclass
class Instance:
    http: int
    grpc: int
    health: int
    exporter: int
    token: str
    log: Path
    scheme: str = "http"


def start_collector(
    otelcol: Path, workdir: Path, env: dict[str, str], configs: list[Path] = COMBINATIONS["local+auth"]
) -> tuple[subprocess.Popen[bytes], Instance]:
    """A Collector on free ports with these configs, healthy; its files under workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = {name: free_port() for name in ("http", "grpc", "health", "exporter", "telemetry")}
    token = secrets.token_urlsafe(24)
    log = workdir / "collector.log"
    args = [
        str(otelcol),
        *(f"--config={c}" for c in configs),
        f"--set=receivers::otlp::protocols::http::endpoint=127.0.0.1:{ports['http']}",
        f"--set=receivers::otlp::protocols::grpc::endpoint=127.0.0.1:{ports['grpc']}",
        f"--set=extensions::health_check::endpoint=127.0.0.1:{ports['health']}",
        f"--set=exporters::prometheus::endpoint=127.0.0.1:{ports['exporter']}",
        "--config=yaml:service::telemetry::metrics::readers: "
        f"[{{pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {ports['telemetry']}}}}}}}}}]",
    ]
    closed = str(free_port())  # nothing listens there: events and spans stay in this instance's queue
    full_env = {
        **os.environ,
        "OTELCOL_AUTH_TOKEN": token,
        "OTELCOL_STORAGE_DIR": str(workdir / "storage"),
        "VICTORIALOGS_PORT": closed,
        "JAEGER_OTLP_HTTP_PORT": closed,
        # Its own internal hop, and pushes that go nowhere (they wait in its queue), not to the stack's.
        "OTELCOL_AGGREGATE_PORT": str(free_port()),
        "PROMETHEUS_OTLP_URL": f"http://127.0.0.1:{closed}/api/v1/otlp/v1/metrics",
        **env,
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    instance = Instance(ports["http"], ports["grpc"], ports["health"], ports["exporter"], token, log)
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{instance.health}/", timeout=1).ok:
                return proc, instance
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"second Collector did not become healthy:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def protected(otelcol: Path, tmp_path: Path) -> Iterator[Instance]:
    proc, instance = start_collector(otelcol, tmp_path, {})
    yield instance
    stop(proc)
    assert instance.token not in instance.log.read_text(), "the token appeared in the Collector's log"


def metrics_request(sent: str) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """One DELTA counter point of 1, labelled with how it was sent, as a task process sends it (with its
    own random service.instance.id)."""
    now = time.time_ns()
    point = {
        "as_int": 1,
        "start_time_unix_nano": now - 10**9,
        "time_unix_nano": now,
        "attributes": [{"key": "sent", "value": {"string_value": sent}}],
    }
    metric = {"name": "auth_probe", "sum": {"aggregation_temporality": 1, "is_monotonic": True, "data_points": [point]}}
    resource = {
        "attributes": [
            {"key": "service.name", "value": {"string_value": "auth-probe"}},
            {"key": "service.instance.id", "value": {"string_value": str(uuid.uuid4())}},
        ]
    }
    return metrics_service_pb2.ExportMetricsServiceRequest(
        # The plugin's instrumentation scope: only that (or a job's dag_id) gets the delta treatment.
        resource_metrics=[
            {"resource": resource, "scope_metrics": [{"scope": {"name": "otel_plugin"}, "metrics": [metric]}]}
        ]
    )


def post(instance: Instance, sent: str, headers: dict[str, str], **kwargs: object) -> requests.Response:
    return requests.post(
        f"{instance.scheme}://127.0.0.1:{instance.http}/v1/metrics",
        data=metrics_request(sent).SerializeToString(),
        headers={"Content-Type": "application/x-protobuf", **headers},
        timeout=10,
        **kwargs,
    )


def exported(instance: Instance) -> dict[str, float]:
    """`sent` label -> value of auth_probe_total at the instance's prometheus exporter."""
    text = requests.get(f"http://127.0.0.1:{instance.exporter}/metrics", timeout=5).text
    return {
        line.split('sent="', 1)[1].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("auth_probe_total{") and 'sent="' in line
    }


def exported_senders(instance: Instance) -> set[str]:
    return set(exported(instance))


def wait_for_senders(instance: Instance, expected: set[str]) -> set[str]:
    deadline = time.monotonic() + 15
    while (seen := exported_senders(instance)) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
    return seen


def test_http_push_needs_the_token(protected: Instance) -> None:
    # Exactly what the plugin sends for OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20<token>.
    plugin_headers = parse_headers(f"Authorization=Bearer%20{protected.token}")

    assert post(protected, "no-token", {}).status_code == 401
    assert post(protected, "wrong-token", {"Authorization": "Bearer not-the-token"}).status_code == 401
    assert post(protected, "token-without-scheme", {"Authorization": protected.token}).status_code == 401
    accepted = post(protected, "plugin-headers", plugin_headers)
    assert accepted.status_code == 200, accepted.text

    # Accepted means it went through the pipeline; refused pushes never reached it.
    assert wait_for_senders(protected, {"plugin-headers"}) == {"plugin-headers"}


def test_grpc_push_needs_the_token(protected: Instance) -> None:
    metadata = [("authorization", f"Bearer {protected.token}")]
    with grpc.insecure_channel(f"127.0.0.1:{protected.grpc}") as channel:
        stub = metrics_service_pb2_grpc.MetricsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Export(metrics_request("grpc-no-token"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub.Export(metrics_request("grpc-token"), metadata=metadata, timeout=10)
    assert wait_for_senders(protected, {"grpc-token"}) == {"grpc-token"}


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_tls_by_environment(otelcol: Path, tmp_path: Path) -> None:
    cert_file, key_file = self_signed_certificate(tmp_path)
    tls_env = {
        "OTELCOL_TLS_ENABLED": "true",
        "OTELCOL_TLS_CERT_FILE": str(cert_file),
        "OTELCOL_TLS_KEY_FILE": str(key_file),
    }
    proc, instance = start_collector(otelcol, tmp_path, tls_env)
    try:
        token = {"Authorization": f"Bearer {instance.token}"}
        plain = post(instance, "plain-http", token)
        assert plain.status_code == 400  # Go's answer to plain HTTP on a TLS port
        instance.scheme = "https"
        assert post(instance, "tls-no-token", {}, verify=str(cert_file)).status_code == 401
        assert post(instance, "tls-token", token, verify=str(cert_file)).status_code == 200
        assert wait_for_senders(instance, {"tls-token"}) == {"tls-token"}
    finally:
        stop(proc)


def test_load_balancer_sends_each_stream_to_one_aggregator(otelcol: Path, tmp_path: Path) -> None:
    """collector/loadbalancer.yaml in front of two aggregators: 20 processes' deltas for each of 16 series
    end up whole at exactly one aggregator each, and both aggregators get some series."""
    procs = []
    try:
        aggregators = []
        for name in ("agg-1", "agg-2"):
            proc, instance = start_collector(otelcol, tmp_path / name, {}, COMBINATIONS["local"])
            procs.append(proc)
            aggregators.append(instance)
        backends = "[" + ", ".join(f"127.0.0.1:{agg.grpc}" for agg in aggregators) + "]"
        proc, tier1 = start_collector(
            otelcol, tmp_path / "tier1", {"OTELCOL_LB_BACKENDS": backends}, COMBINATIONS["loadbalancer"]
        )
        procs.append(proc)

        series = [f"series-{i}" for i in range(16)]
        for _ in range(20):
            for sent in series:
                assert post(tier1, sent, {}).status_code == 200

        def placement() -> list[dict[str, float]]:
            return [exported(agg) for agg in aggregators]

        deadline = time.monotonic() + 30
        while sum(sum(seen.values()) for seen in placement()) < 20 * len(series) and time.monotonic() < deadline:
            time.sleep(0.5)
        seen = placement()
        assert sorted(name for agg in seen for name in agg) == sorted(series)  # each series on one aggregator
        assert {value for agg in seen for value in agg.values()} == {20.0}  # ...with every delta
        assert all(seen), seen  # and the streams are spread
    finally:
        for proc in procs:
            stop(proc)
