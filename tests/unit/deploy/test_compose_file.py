"""compose/docker-compose.yml cannot run here (no Docker engine): check it as far as can be done without one.

It must validate against the Compose Specification schema (vendored in tests/schemas/), everything it mounts
or builds must exist in the repo, and it must run the same configs and flags as the native launcher.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"
STACK_SH = COMPOSE_DIR / "stack.sh"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification(compose, validator) -> None:
    assert _errors(validator, compose) == []


def test_schema_rejects_a_broken_compose_file(compose, validator) -> None:
    """The validator is live: a misspelt key and a wrong type are both reported."""
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["collector"]["volume"] = broken["services"]["collector"].pop("volumes")
    broken["services"]["grafana"]["ports"] = "3000:3000"
    errors = _errors(validator, broken)
    assert any("services/collector" in e and "volume" in e for e in errors), errors
    assert any("services/grafana/ports" in e for e in errors), errors


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR} and ${VAR:-default}, with env standing in for the user's shell."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1], m[2] or ""), text)


def _bind_sources(compose: dict[str, Any], env: dict[str, str]) -> list[tuple[str, Path]]:
    """(service, host path) of every bind mount; named volumes are skipped."""
    binds = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            volume = _interpolate(volume, env) if isinstance(volume, str) else volume
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/")):
                binds.append((name, (COMPOSE_DIR / source).resolve()))
    return binds


# The two ways the header says to run it: the defaults, and the grafana-stack profile's variables.
VARIANTS = {"default": {}, "grafana-stack": {"COLLECTOR_OVERLAY": "grafana", "GRAFANA_PROVISIONING": "grafana-stack"}}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_bind_mount_exists_in_the_repo(compose, variant: str) -> None:
    binds = _bind_sources(compose, VARIANTS[variant])
    provisioning = VARIANTS[variant].get("GRAFANA_PROVISIONING", "local")
    assert {str(path.relative_to(ROOT)) for _, path in binds} == {
        "collector/config.yaml",
        "collector/overlays",
        "prometheus/prometheus.yml",
        "grafana/prometheus",
        "alertmanager/alertmanager.yml",
        "jaeger/jaeger.yaml",
        "loki/loki.yaml",
        "tempo/tempo.yaml",
        f"grafana/provisioning/{provisioning}",
        "grafana/dashboards",
        "demo/dags",
    }
    missing = [f"{service}: {path.relative_to(ROOT)}" for service, path in binds if not path.exists()]
    assert missing == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_collector_overlay_of_each_variant_exists(compose, variant: str) -> None:
    command = _interpolate(" ".join(compose["services"]["collector"]["command"]), VARIANTS[variant])
    overlays = re.findall(r"/etc/otelcol-airflow/(overlays/[\w-]+\.yaml)", command)
    assert overlays, command
    assert all((ROOT / "collector" / overlay).is_file() for overlay in overlays), overlays


def _dockerfile_copies(dockerfile: Path) -> list[str]:
    """Sources of the COPY instructions that read from the build context (not --from=<stage>)."""
    sources = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--from=") for p in parts):
            sources += [p for p in parts[1:-1] if not p.startswith("--")]
    return sources


def test_every_build_and_what_it_copies_exists(compose) -> None:
    builds = {name: s["build"] for name, s in compose["services"].items() if "build" in s}
    assert set(builds) == {"collector", "airflow"}
    for name, build in builds.items():
        context = (COMPOSE_DIR / build["context"]).resolve()
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        copies = _dockerfile_copies(dockerfile)
        assert copies, f"{name}: no COPY from the build context in {dockerfile}"
        missing = [src for src in copies if not (context / src).exists()]
        assert missing == [], f"{name}: {dockerfile.name} copies files that do not exist: {missing}"


def test_images_are_pinned(compose) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
        assert re.search(r"\d+\.\d+", tag), f"{name}: image {image} has no version tag"


def test_grafana_stack_profile_adds_loki_and_tempo_only(compose) -> None:
    profiled = {name for name, s in compose["services"].items() if "grafana-stack" in s.get("profiles", [])}
    assert profiled == {"loki", "tempo"}
    unprofiled = {name for name, s in compose["services"].items() if not s.get("profiles")}
    assert unprofiled == {"collector", "prometheus", "alertmanager", "victorialogs", "jaeger", "grafana", "airflow"}


def _flag_names(args: list[str]) -> set[str]:
    return {re.sub(r"=.*", "", arg) for arg in args if arg.startswith("-")}


def _native_flags(service: str) -> set[str]:
    """Flag names of a service's command line in compose/stack.sh (its command_of case branch)."""
    text = STACK_SH.read_text()
    body = text[text.index("command_of()") :]
    branch = re.search(rf"^\s+{service}\)\n(.*?);;", body, re.M | re.S)
    assert branch, f"no {service} branch in command_of() of {STACK_SH}"
    return _flag_names(re.findall(r"(?<=\s)(-{1,2}[\w.-]+(?:=\S*)?)", branch[1]))


@pytest.mark.parametrize("service", ["prometheus", "alertmanager", "victorialogs"])
def test_flags_are_the_native_launchers(compose, service: str) -> None:
    """Same features and retention as compose/stack.sh (values differ only in paths and addresses)."""
    native = _native_flags(service)
    assert len(native) >= 3, native
    assert _flag_names(compose["services"][service]["command"]) == native


def _native_health_urls() -> dict[str, str]:
    """compose/stack.sh's readiness URL per service (its health_url case branches)."""
    text = STACK_SH.read_text()
    body = text[text.index("health_url()") :]
    body = body[: body.index("esac")]
    return dict(re.findall(r"^\s+(\w+)\) echo (\S+) ;;", body, re.M))


def test_healthchecks_probe_the_native_launchers_readiness_urls(compose) -> None:
    native = _native_health_urls()
    assert set(native) == {"collector", "prometheus", "alertmanager", "victorialogs", "jaeger"}, native
    for name, url in native.items():
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[-1] == url, (name, test)
    unprofiled = [n for n, s in compose["services"].items() if not s.get("profiles")]
    assert all("healthcheck" in compose["services"][n] for n in unprofiled)


def test_collector_image_carries_the_probe_its_healthcheck_runs(compose) -> None:
    probe = compose["services"]["collector"]["healthcheck"]["test"][1]
    dockerfile = (ROOT / "collector" / "Dockerfile").read_text()
    assert re.search(rf"^COPY --from=busybox:[\d.]+-musl /bin/busybox {probe}$", dockerfile, re.M), probe


def test_depends_on_waits_for_health_in_the_native_start_order(compose) -> None:
    services = compose["services"]
    edges = set()
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        for dep, spec in depends.items():
            assert spec == {"condition": "service_healthy"} and "healthcheck" in services[dep], (name, dep)
            edges.add((dep, name))
    # compose/stack.sh starts the stores, then the Collector feeding them; Prometheus lives in the Collector's
    # network here, so it follows the Collector; Grafana and Airflow follow what they read and write.
    assert {("victorialogs", "collector"), ("jaeger", "collector"), ("collector", "prometheus"),
            ("collector", "airflow"), ("prometheus", "grafana")} <= edges
    order = re.search(r"^SERVICES=\(([^)]*)\)", STACK_SH.read_text(), re.M)
    assert order
    native = order[1].split()
    for before, after in edges:
        in_its_network = services[after].get("network_mode") == f"service:{before}"  # must follow it here
        if before in native and after in native and not in_its_network:
            assert native.index(before) < native.index(after), (before, after)
