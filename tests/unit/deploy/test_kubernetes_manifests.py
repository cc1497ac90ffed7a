"""Offline checks of the Kubernetes deployment (deploy/kubernetes, collector/kustomization.yaml) and of the
official Airflow chart values (deploy/kubernetes/airflow-values.yaml).

The kustomization is rendered here (resources, the ConfigMap generated from collector/, namespace, images:
the only features it uses; any other key fails the test rather than being ignored), and every object is
validated against the Kubernetes OpenAPI schemas shipped by kubernetes-validate, strictly (unknown fields
fail). The chart values are checked where they become Kubernetes objects: their env, volumes and mounts
are validated as a Pod, and they must agree with the agent that drains the spool.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33"  # a version kubernetes-validate ships schemas for; the manifests use nothing newer
KUSTOMIZE_KEYS = {"apiVersion", "kind", "namespace", "resources", "images", "configMapGenerator"}
CLUSTER_SCOPED = {"Namespace"}
ENV_REF = re.compile(r"\$\{env:([A-Z0-9_]+)(:-[^}]*)?\}")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    """What ``kustomize build`` gives for the features these kustomizations use (without name hashes)."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(spec) <= KUSTOMIZE_KEYS, f"{directory}: unsupported kustomize keys {set(spec) - KUSTOMIZE_KEYS}"
    objects: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = (directory / resource).resolve()
        objects += render(path) if path.is_dir() else _documents(path)
    for generator in spec.get("configMapGenerator", []):
        data = {}
        for entry in generator["files"]:
            key, _, source = entry.rpartition("=") if "=" in entry else (Path(entry).name, "", entry)
            source_path = (directory / source).resolve()
            # kustomize's load restriction: generator files must be in or below the kustomization.
            assert source_path.is_relative_to(directory.resolve()), f"{entry} is outside {directory}"
            data[key] = source_path.read_text()
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]},
                        "data": data})
    images = {image["name"]: f"{image['newName']}:{image['newTag']}" for image in spec.get("images", [])}
    for obj in objects:
        if "namespace" in spec and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = spec["namespace"]
        for container in _containers(obj):
            container["image"] = images.get(container["image"], container["image"])
    return objects


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj.get("spec", {}).get("template", {}).get("spec")


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    pod = _pod_spec(obj) or {}
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render(DEPLOY)


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def test_every_object_is_valid_against_the_kubernetes_schemas(objects):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [("ConfigMap", "otelcol-airflow-config"), ("DaemonSet", "otelcol-agent"),
                     ("Namespace", "airflow-otel"), ("Service", "otelcol-agent"),
                     ("Service", "otelcol-aggregator"), ("StatefulSet", "otelcol-aggregator")]
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_schema_validation_would_catch_a_mistake(objects):
    broken = copy.deepcopy(by_kind(objects, "DaemonSet", "otelcol-agent"))
    broken["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []  # a typo'd field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_configmap_holds_every_collector_config_unchanged(objects):
    data = by_kind(objects, "ConfigMap", "otelcol-airflow-config")["data"]
    collector = ROOT / "collector"
    files = [p for p in [*collector.glob("*.yaml"), *(collector / "overlays").glob("*.yaml")]
             if p.name not in ("kustomization.yaml", "builder.yaml")]  # builder.yaml: the build manifest
    assert sorted(data) == sorted(p.name for p in files), "collector/kustomization.yaml must list every config"
    for path in files:
        assert data[path.name] == path.read_text()


@pytest.mark.parametrize("workload", [("DaemonSet", "otelcol-agent"), ("StatefulSet", "otelcol-aggregator")])
def test_collector_containers_load_existing_configs_and_set_every_variable_they_need(objects, workload):
    data = by_kind(objects, "ConfigMap", "otelcol-airflow-config")["data"]
    obj = by_kind(objects, *workload)
    pod = _pod_spec(obj)
    (collector,) = [c for c in pod["containers"] if c["name"] == "otelcol"]
    configs = [a.split("=", 1)[1] for a in collector["args"] if a.startswith("--config=")]
    assert configs, collector["args"]
    mount = next(m for m in collector["volumeMounts"] if m["name"] == "config")["mountPath"]
    env = env_of(collector)
    for config in configs:
        assert config.startswith(mount + "/") and config[len(mount) + 1 :] in data, config
        required = {m.group(1) for m in ENV_REF.finditer(data[config[len(mount) + 1 :]]) if not m.group(2)}
        assert required <= env.keys(), f"{workload}: {config} needs {required - env.keys()}"
    volumes = {v["name"] for v in pod["volumes"]} | {t["metadata"]["name"] for t in
                                                      obj["spec"].get("volumeClaimTemplates", [])}
    for container in _containers(obj):
        assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes


def test_agents_route_to_every_aggregator_by_its_stable_name(objects):
    aggregators = by_kind(objects, "StatefulSet", "otelcol-aggregator")
    service = by_kind(objects, "Service", "otelcol-aggregator")
    agent = by_kind(objects, "DaemonSet", "otelcol-agent")
    backends = yaml.safe_load(env_of(_pod_spec(agent)["containers"][0])["OTELCOL_LB_BACKENDS"])
    namespace, name = aggregators["metadata"]["namespace"], aggregators["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None" and aggregators["spec"]["serviceName"] == service["metadata"]["name"]
    assert backends == [f"{name}-{i}.{service['metadata']['name']}.{namespace}.svc.cluster.local:4317"
                        for i in range(aggregators["spec"]["replicas"])]


# --- the official Airflow chart's values --------------------------------------------------------------


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "airflow-values.yaml").read_text())


def airflow_pod(values: dict[str, Any]) -> dict[str, Any]:
    """The parts of an Airflow pod the chart builds from these values (env, extraEnv, volumes, mounts)."""
    image = values["images"]["airflow"]
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "airflow-worker-0"},
        "spec": {
            "containers": [{
                "name": "worker", "image": f"{image['repository']}:{image['tag']}",
                "env": [*values["env"], *yaml.safe_load(values["extraEnv"])],
                "volumeMounts": values["volumeMounts"],
            }],
            "volumes": values["volumes"],
        },
    }


def test_chart_values_make_a_valid_pod(values):
    kubernetes_validate.validate(airflow_pod(values), KUBERNETES_VERSION, strict=True)


def test_each_airflow_pod_spools_to_its_own_directory_on_the_node_the_agent_drains(values, objects):
    env = airflow_pod(values)["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    spool = next(e["value"] for e in env if e["name"] == "AIRFLOW__OTEL_PLUGIN__SPOOL_DIR")
    # Kubernetes expands $(POD_NAME) only if POD_NAME is defined earlier in the list.
    assert spool.endswith("/$(POD_NAME)") and names.index("POD_NAME") < names.index("AIRFLOW__OTEL_PLUGIN__SPOOL_DIR")
    (mount,) = values["volumeMounts"]
    (volume,) = values["volumes"]
    assert spool == f"{mount['mountPath']}/$(POD_NAME)" and mount["name"] == volume["name"]

    agent = _pod_spec(by_kind(objects, "DaemonSet", "otelcol-agent"))
    replayer = next(c for c in agent["containers"] if c["name"] == "spool-replayer")
    (host_mount,) = replayer["volumeMounts"]
    host_path = next(v for v in agent["volumes"] if v["name"] == host_mount["name"])["hostPath"]["path"]
    assert volume["hostPath"]["path"] == f"{host_path}/{host_mount['subPath']}"  # the same node directory
    assert f"--spool-root {host_mount['mountPath']}" in replayer["command"][-1]
    assert "--abandoned-after" in replayer["command"][-1]  # pids of other pods' namespaces mean nothing here


def test_chart_values_point_at_the_node_agent(values, objects):
    endpoint = next(e["value"] for e in values["env"] if e["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT")
    service = by_kind(objects, "Service", "otelcol-agent")
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert endpoint == f"http://{host}:4318"
