"""Static checks of the Collector configs (collector/config.yaml, overlays, loadbalancer.yaml) and of the
stores' configs that decide labels (loki/loki.yaml).

Every component a config defines must be built into our distribution (collector/builder.yaml), and no
run-scoped id (run_id, try_number, trace_id ...) may become a metric label, a stream field or an index
label anywhere. tests/integration/test_collector_validate.py runs the real binary on the same files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_plugin.core import contract

ROOT = Path(__file__).resolve().parents[3]
COLLECTOR = ROOT / "collector"
BASE = COLLECTOR / "config.yaml"
CONFIGS = sorted([BASE, COLLECTOR / "loadbalancer.yaml", *(COLLECTOR / "overlays").glob("*.yaml")])
SECTIONS = ("receivers", "processors", "exporters", "extensions", "connectors")

# Component type (as configs name it) of each module the builder manifest may list. A module missing here
# fails test_every_manifest_module_is_known; the integration test checks this table against the binary.
TYPE_OF_MODULE = {
    "otlpreceiver": "otlp",
    "memorylimiterprocessor": "memory_limiter",
    "batchprocessor": "batch",
    "resourceprocessor": "resource",
    "transformprocessor": "transform",
    "filterprocessor": "filter",
    "groupbyattrsprocessor": "groupbyattrs",
    "deltatocumulativeprocessor": "delta_to_cumulative",
    "exemplarsprocessor": "exemplars",  # ours: collector/exemplarsprocessor
    "restampprocessor": "restamp",  # ours: collector/restampprocessor
    "otlpexporter": "otlp_grpc",
    "otlphttpexporter": "otlp_http",
    "debugexporter": "debug",
    "prometheusexporter": "prometheus",
    "loadbalancingexporter": "load_balancing",
    "healthcheckextension": "health_check",
    "filestorage": "file_storage",
    "bearertokenauthextension": "bearertokenauth",
}

# The contract's run-scoped keys, plus spellings other SDKs and users produce.
RUN_SCOPED = (*contract.RUN_SCOPED_KEYS, "airflow.run_id", "RUN_ID", "airflow.try_number")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def manifest_types() -> dict[str, set[str]]:
    """Section -> component types built into the distribution, from collector/builder.yaml."""
    manifest = load(COLLECTOR / "builder.yaml")
    return {
        section: {TYPE_OF_MODULE.get(entry["gomod"].split()[0].rsplit("/", 1)[-1], "?") for entry in manifest[section]}
        for section in SECTIONS
        if section in manifest
    }


def test_every_manifest_module_is_known() -> None:
    unknown = [s for s, types in manifest_types().items() if "?" in types]
    assert unknown == [], f"add the new module's component type to TYPE_OF_MODULE (sections {unknown})"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(COLLECTOR)))
def test_every_component_is_in_the_manifest(path: Path) -> None:
    built = manifest_types()
    config = load(path)
    defined = {section: {key.split("/")[0] for key in config.get(section) or {}} for section in SECTIONS}
    assert any(defined.values()), f"{path} defines no component"
    missing = {s: sorted(types - built.get(s, set())) for s, types in defined.items() if types - built.get(s, set())}
    assert missing == {}, f"{path.name} uses components that collector/builder.yaml does not build"


def drop_run_ids_pattern(scope: str = "datapoint") -> re.Pattern[str]:
    """The regex of the base config's guard that deletes run-scoped attributes from every data point (or,
    with scope="resource", from the resource, where jobs on other OTel SDKs carry the run's ids)."""
    statements = load(BASE)["processors"]["transform/drop_run_ids"]["metric_statements"]
    text = " ".join(s for block in statements for s in block["statements"])
    match = re.search(rf'delete_matching_keys\({scope}\.attributes, "(.+?)"\)', text)
    assert match, text
    # Go's RE2 and Python's re agree on this subset (groups, classes, ?, alternation, the (?i) flag).
    return re.compile(match[1])


def test_guard_uses_one_regex_for_points_and_resources() -> None:
    assert drop_run_ids_pattern("resource").pattern == drop_run_ids_pattern().pattern


def test_guard_drops_every_run_scoped_attribute() -> None:
    pattern = drop_run_ids_pattern()
    assert [name for name in RUN_SCOPED if not pattern.search(name)] == []


def test_guard_keeps_every_metric_label_of_the_contract() -> None:
    pattern = drop_run_ids_pattern()
    labels = {label for metric in contract.METRICS for label in metric.attributes}
    assert {"dag_id", "task_id", "state"} <= labels
    assert sorted(label for label in labels if pattern.search(label)) == []


OURS = "metrics/airflow_otel_plugin"  # the plugin's metrics, first half (and the first tier's only metrics step)
AGGREGATE = "metrics/airflow_otel_plugin_aggregate"  # second half: merge, re-stamp, add up


def merged_pipeline(path: Path, name: str = OURS) -> dict[str, Any]:
    """A pipeline as the Collector sees it when ``path`` is merged over the base (keys replaced, not merged)."""
    pipeline = dict(load(BASE)["service"]["pipelines"][name])
    if path != BASE:
        pipeline.update(load(path)["service"]["pipelines"].get(name) or {})
    return pipeline


def metrics_processors(config: dict[str, Any], pipeline: str = OURS) -> list[str]:
    return config["service"]["pipelines"][pipeline]["processors"]


@pytest.mark.parametrize("path", [BASE, COLLECTOR / "loadbalancer.yaml"], ids=lambda p: p.name)
def test_guard_runs_before_metrics_leave_the_pipeline(path: Path) -> None:
    """Base: before the disk queue and aggregation. First tier: before routing by stream, so the stream id is
    the aggregate's."""
    processors = merged_pipeline(path)["processors"]
    for step in ("filter/airflow_otel_plugin_only", "transform/keep_series_identity", "transform/drop_run_ids"):
        assert step in processors, f"{path.name}: {step} missing from {processors}"
    assert processors.index("filter/airflow_otel_plugin_only") < processors.index("transform/keep_series_identity")
    if "transform/job_resource_labels" in processors:  # the aggregator's (not the first tier's: see its comment)
        assert processors.index("filter/airflow_otel_plugin_only") < processors.index("transform/job_resource_labels")
        assert processors.index("transform/job_resource_labels") < processors.index("transform/drop_run_ids")


def test_aggregation_runs_behind_the_disk_queue_with_one_consumer() -> None:
    """The first half ends in a disk queue read by one consumer (one ordered writer for delta_to_cumulative);
    the second half merges, re-stamps, adds up (carrying each delta's exemplars across), and hands on to the
    scraped exporter and the disk push queue."""
    config = load(BASE)
    (hop,) = config["service"]["pipelines"][OURS]["exporters"]
    queue = config["exporters"][hop]["sending_queue"]
    assert queue["storage"] == "file_storage" and queue["num_consumers"] == 1
    receiver = config["exporters"][hop]["endpoint"].rsplit(":", 1)[1]
    assert config["receivers"]["otlp/airflow_otel_plugin_aggregate"]["protocols"]["grpc"]["endpoint"].endswith(receiver)
    assert metrics_processors(config, AGGREGATE) == [
        "groupbyattrs/compact",
        "transform/merge_deltas",
        "restamp",
        "exemplars/stash",
        "delta_to_cumulative",
        "exemplars/restore",
        "resource/aggregator_identity",
    ]
    assert config["processors"]["exemplars/stash"] == {"mode": "stash"}
    assert config["processors"]["exemplars/restore"] == {"mode": "restore"}
    # A new series' 0 sample must precede any scrape that can read its first total (docs/reliability.md).
    assert config["processors"]["restamp"] == {"start_lead": "1s"}
    assert config["service"]["pipelines"][AGGREGATE]["exporters"] == ["prometheus", "otlp_http/prometheus"]
    push = config["exporters"]["otlp_http/prometheus"]["sending_queue"]
    assert push["storage"] == "file_storage" and push["num_consumers"] == 1 and "batch" not in push


@pytest.mark.parametrize("overlay", ["local.yaml", "grafana.yaml"])
def test_nothing_accepted_waits_only_in_memory(overlay: str) -> None:
    """No batch processor anywhere (it answers before it exports), and every exporter a pipeline names keeps
    its queue on disk, except the scraped `prometheus` exporter, whose samples are also pushed from disk."""
    config = load(BASE)
    exporters = {**config["exporters"], **load(COLLECTOR / "overlays" / overlay)["exporters"]}
    for name, pipeline in config["service"]["pipelines"].items():
        assert not [p for p in pipeline.get("processors", []) if p.split("/")[0] == "batch"], name
        for exporter in pipeline["exporters"]:
            if exporter != "prometheus":
                assert exporters[exporter]["sending_queue"]["storage"] == "file_storage", (name, exporter)
    assert "batch" not in {key.split("/")[0] for key in config["processors"]}


def test_only_our_scope_gets_the_delta_treatment() -> None:
    """The filters select by the plugin's instrumentation scope (otel_plugin.core.pipeline.SCOPE) or a job's
    dag_id resource attribute; the other pipelines take exactly the complement."""
    from otel_plugin.core.pipeline import SCOPE

    processors = load(BASE)["processors"]
    ours = processors["filter/airflow_otel_plugin_only"]
    others = processors["filter/not_airflow_otel_plugin"]
    for signal, context in (("metrics", "metric"), ("logs", "log_record"), ("traces", "span")):
        (drop_not_ours,) = ours[signal][context]
        (drop_ours,) = others[signal][context]
        assert drop_not_ours == f"not ({drop_ours})"
        scope = re.search(r'IsMatch\(instrumentation_scope\.name, "(.+?)"\)', drop_ours)
        assert scope, drop_ours
        pattern = re.compile(scope[1].replace("\\\\", "\\"))
        assert pattern.search(SCOPE) and pattern.search(f"{SCOPE}.job") and not pattern.search("airflow")
    pipelines = load(BASE)["service"]["pipelines"]
    for name, pipeline in pipelines.items():
        if name.endswith("/other_apps"):
            assert "filter/not_airflow_otel_plugin" in pipeline["processors"], name
        elif pipeline["receivers"] == ["otlp"]:
            assert "filter/airflow_otel_plugin_only" in pipeline["processors"], name


def test_first_tier_does_not_aggregate() -> None:
    """Aggregation must happen once, at the aggregator that owns the stream."""
    lb = load(COLLECTOR / "loadbalancer.yaml")
    processors = merged_pipeline(COLLECTOR / "loadbalancer.yaml")["processors"]
    assert not {"delta_to_cumulative", "transform/merge_and_restamp_deltas", "groupbyattrs/compact"} & set(processors)
    assert lb["service"]["pipelines"][OURS]["exporters"] == ["load_balancing/metrics"]
    assert lb["exporters"]["load_balancing/metrics"]["routing_key"] == "streamID"
    # Every pipeline of the base that reads the public receiver is re-pointed at the aggregators.
    base = load(BASE)["service"]["pipelines"]
    public = {name for name, p in base.items() if p["receivers"] == ["otlp"]}
    assert public <= set(lb["service"]["pipelines"]), public - set(lb["service"]["pipelines"])
    for name in public:
        assert all(e.startswith("load_balancing/") for e in lb["service"]["pipelines"][name]["exporters"]), name


def test_jobs_bounded_resource_attributes_become_labels_and_leave_the_resource() -> None:
    """A job on another OTel SDK (docs/jobs.md) has dag_id and task_id only in its resource."""
    blocks = load(BASE)["processors"]["transform/job_resource_labels"]["metric_statements"]
    statements = {block["context"]: block["statements"] for block in blocks}
    for key in ("dag_id", "task_id"):
        copy = f'set(datapoint.attributes["{key}"], resource.attributes["{key}"])'
        assert any(s.startswith(copy) and f'datapoint.attributes["{key}"] == nil' in s
                   for s in statements["datapoint"]), statements
        assert f'delete_key(resource.attributes, "{key}")' in statements["resource"]
    assert [block["context"] for block in blocks] == ["datapoint", "resource"]  # copy first, then delete


def test_the_resource_keeps_only_what_names_the_series() -> None:
    """Anything else on the resource (service.instance.id, telemetry.sdk.version, k8s.pod.name) would split
    one Prometheus series into streams whose totals overwrite each other."""
    (block,) = load(BASE)["processors"]["transform/keep_series_identity"]["metric_statements"]
    assert block["context"] == "resource"
    assert block["statements"] == [
        'keep_keys(resource.attributes, ["service.name", "service.namespace", "dag_id", "task_id"])']


def label_lists() -> dict[str, list[str]]:
    """Every list of attribute names that becomes stream fields, index labels or routing keys."""
    found: dict[str, list[str]] = {}
    for path in CONFIGS:
        for name, exporter in (load(path).get("exporters") or {}).items():
            stream_fields = (exporter.get("headers") or {}).get("VL-Stream-Fields")
            if stream_fields:
                found[f"{path.name}: {name} VL-Stream-Fields"] = [f.strip() for f in stream_fields.split(",")]
            if exporter.get("routing_attributes"):
                found[f"{path.name}: {name} routing_attributes"] = exporter["routing_attributes"]
    otlp = load(ROOT / "loki" / "loki.yaml")["limits_config"]["otlp_config"]
    for kind in ("resource_attributes", "log_attributes"):
        rules = otlp[kind]["attributes_config"] if kind == "resource_attributes" else otlp[kind]
        for i, rule in enumerate(rules):
            if rule["action"] == "index_label":
                found[f"loki.yaml: {kind}[{i}] index_label"] = rule["attributes"]
    return found


def test_no_run_scoped_or_per_process_label_anywhere() -> None:
    pattern = drop_run_ids_pattern()
    lists = label_lists()
    assert any("VL-Stream-Fields" in where for where in lists), lists  # the local overlay's stream fields
    assert any("loki.yaml" in where for where in lists), lists
    bad = {where: names for where, names in lists.items() if any(pattern.search(n) for n in names)}
    per_process = {where: names for where, names in lists.items() if "service.instance.id" in names}
    assert bad == {}
    assert per_process == {}


def test_loki_indexes_only_what_it_lists() -> None:
    """Loki's default index labels include service.instance.id (one stream per task process)."""
    otlp = load(ROOT / "loki" / "loki.yaml")["limits_config"]["otlp_config"]
    assert otlp["resource_attributes"]["ignore_defaults"] is True
    indexed = [
        a
        for rule in otlp["resource_attributes"]["attributes_config"]
        if rule["action"] == "index_label"
        for a in rule.get("attributes", [])
    ]
    assert "service.name" in indexed
    assert len(indexed) <= 2, indexed


def test_prometheus_exporter_does_not_turn_resource_attributes_into_labels() -> None:
    exporter = load(BASE)["exporters"]["prometheus"]
    assert not (exporter.get("resource_to_telemetry_conversion") or {}).get("enabled", False)


def test_auth_overlay_keeps_the_base_extensions() -> None:
    """Merging replaces lists: the overlay's service.extensions must repeat the base's, plus the authenticator."""
    base = load(BASE)["service"]["extensions"]
    auth = load(COLLECTOR / "overlays" / "auth.yaml")
    assert auth["service"]["extensions"] == [*base, "bearertokenauth"]
    assert auth["extensions"]["bearertokenauth"]["token"] == "${env:OTELCOL_AUTH_TOKEN}"  # never a literal
    for protocol in ("grpc", "http"):
        assert auth["receivers"]["otlp"]["protocols"][protocol]["auth"] == {"authenticator": "bearertokenauth"}


@pytest.mark.parametrize("overlay", ["local.yaml", "grafana.yaml"])
def test_store_overlays_define_what_the_pipelines_name(overlay: str) -> None:
    pipelines = load(BASE)["service"]["pipelines"]
    named = {e for p in pipelines.values() for e in p["exporters"]} - set(load(BASE)["exporters"])
    exporters = load(COLLECTOR / "overlays" / overlay)["exporters"]
    assert named == set(exporters)
    for name in named:
        assert exporters[name]["sending_queue"]["storage"] in load(BASE)["extensions"], name
