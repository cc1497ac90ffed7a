"""The generated Grafana files: up to date, valid for the foundation SDK's models, consistent with each other
(every datasource a dashboard, link or rule names is provisioned with that type) and with the compose file."""

from __future__ import annotations

import json
import re
import warnings
from typing import Any

import pytest
import yaml

from grafana.generator import alerts, outputs
from grafana.generator.defaults import FLAVOURS, Flavour
from otel_plugin.readback import queries as Q

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.alerting import Rule
    from grafana_foundation_sdk.models.dashboard import Dashboard

GRAFANA = outputs.GRAFANA_DIR
COMPOSE = GRAFANA.parent / "compose" / "docker-compose.yml"
GENERATED = outputs.generate()
EXPRESSIONS_UID = "__expr__"  # Grafana's server-side expressions, not a datasource


def unescape(value: Any) -> Any:
    """What Grafana reads from a provisioning file once it expanded it ($$ is a literal $)."""
    if isinstance(value, dict):
        return {k: unescape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unescape(v) for v in value]
    return value.replace("$$", "$") if isinstance(value, str) else value


def provisioning(flavour: Flavour, kind: str, name: str) -> dict[str, Any]:
    return yaml.safe_load((GRAFANA / "provisioning" / flavour.name / kind / name).read_text())


def dashboards(flavour: Flavour) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards" / flavour.name).glob("*.json"))}


def test_committed_files_are_what_the_generator_writes():
    behind = outputs.stale(GENERATED)
    assert not behind, f"grafana/ is out of date for {behind}: run `{outputs.REGENERATE}` and commit the result"


def test_no_file_under_grafana_outputs_that_the_generator_does_not_write():
    on_disk = {
        str(p.relative_to(GRAFANA))
        for d in ("dashboards", "provisioning", "prometheus")
        for p in (GRAFANA / d).rglob("*")
        if p.is_file()
    }
    assert on_disk == set(GENERATED), f"stray: {sorted(on_disk - set(GENERATED))}"


def test_dashboard_json_is_written_with_sorted_keys():
    """Stable diffs: every object's keys appear in sorted order in the committed file (read in file order)."""
    unsorted: list[str] = []

    def check(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if keys != sorted(keys):
            unsorted.append(", ".join(keys))
        return dict(pairs)

    for path in GENERATED:
        if path.endswith(".json"):
            json.loads((GRAFANA / path).read_text(), object_pairs_hook=check)
            assert unsorted == [], f"{path}: keys out of order in {{{unsorted[0]}}}"


@pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: f.name)
def test_dashboards_round_trip_through_the_sdk_model(flavour):
    found = dashboards(flavour)
    assert set(found) == set(outputs.DASHBOARDS)
    for name, data in found.items():
        again = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
        assert again == data, f"{flavour.name}/{name} does not survive the SDK's Dashboard model"


def test_dashboard_uids_are_fixed_and_the_same_in_both_flavours():
    uids = {f.name: sorted(d["uid"] for d in dashboards(f).values()) for f in FLAVOURS}
    assert (
        uids["local"]
        == uids["grafana-stack"]
        == sorted(["airflow-otel-overview", "airflow-otel-run-lookup", "airflow-otel-dag-run-traces"])
    )
    for flavour in FLAVOURS:
        for data in dashboards(flavour).values():
            ids = [p["id"] for p in data["panels"]]
            assert ids == list(range(1, len(ids) + 1))


@pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: f.name)
def test_every_datasource_reference_is_provisioned_with_that_type(flavour):
    provisioned = {d["uid"]: d["type"] for d in provisioning(flavour, "datasources", "datasources.yaml")["datasources"]}
    assert provisioned == {d.uid: d.type for d in flavour.datasources}
    checked = 0
    for name, data in dashboards(flavour).items():
        for node in outputs.walk(data):
            ref = node.get("datasource")
            if isinstance(ref, dict) and "uid" in ref:
                assert provisioned.get(ref["uid"]) == ref["type"], f"{name}: {ref}"
                checked += 1
            if "datasourceUid" in node:  # data links into Explore
                assert node["datasourceUid"] in provisioned, f"{name}: {node}"
                checked += 1
    for ds in provisioning(flavour, "datasources", "datasources.yaml")["datasources"]:
        for node in outputs.walk(ds["jsonData"]):
            if "datasourceUid" in node:  # derived fields, tracesToLogsV2, exemplar destinations
                assert node["datasourceUid"] in provisioned and node["datasourceUid"] != ds["uid"], node
                checked += 1
    for rule in provisioning(flavour, "alerting", "rules.yaml")["groups"][0]["rules"]:
        for query in rule["data"]:
            assert query["datasourceUid"] in {*provisioned, EXPRESSIONS_UID}
            checked += 1
    assert checked > 40


@pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: f.name)
def test_links_go_both_ways(flavour):
    by_type = {d["type"]: d for d in provisioning(flavour, "datasources", "datasources.yaml")["datasources"]}
    logs, traces, prom = by_type[flavour.logs.type], by_type[flavour.traces.type], by_type["prometheus"]
    (derived,) = unescape(logs["jsonData"]["derivedFields"])
    assert (derived["matcherType"], derived["matcherRegex"], derived["datasourceUid"]) == (
        "label",
        "trace_id",
        flavour.traces.uid,
    )
    assert derived["url"] == "${__value.raw}"
    to_logs = unescape(traces["jsonData"]["tracesToLogsV2"])
    assert to_logs["datasourceUid"] == flavour.logs.uid and to_logs["customQuery"] is True
    assert to_logs["query"] == Q.render(
        Q.get("trace_events"), flavour.logs_dialect, trace_id="${__trace.traceId}", service=Q.ANY_SERVICE
    )
    (exemplar,) = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplar == {"name": "trace_id", "datasourceUid": flavour.traces.uid, "urlDisplayLabel": "Trace"}


def test_provisioning_files_escape_every_dollar_but_the_compose_environment():
    compose = yaml.safe_load(COMPOSE.read_text())
    grafana_env = set(compose["services"]["grafana"]["environment"])
    for path in (GRAFANA / "provisioning").rglob("*.yaml"):
        for line in path.read_text().splitlines():
            bare = re.findall(r"(?<!\$)\$(?!\$)\{?(\w+)", line.replace("$$", ""))
            for name in bare:
                assert name in grafana_env, f"{path}: ${name} is not set for Grafana in {COMPOSE.name}: {line}"


def grafana_mounts() -> dict[str, str]:
    """The Grafana service's bind mounts in the compose file: source (as written) -> path in the container."""
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        if volume.startswith("../"):
            source, target = volume.split(":/", 1)
            mounts[source] = "/" + target.split(":")[0]
    return mounts


def test_compose_mounts_one_provisioning_set_and_the_dashboards_its_providers_read():
    mounts = grafana_mounts()
    (set_source,) = [s for s in mounts if s.startswith("../grafana/provisioning/")]
    assert mounts[set_source] == "/etc/grafana/provisioning"
    choice = re.fullmatch(r"\.\./grafana/provisioning/\$\{(\w+):-([\w-]+)\}", set_source)
    assert choice and choice[2] == "local", set_source
    in_container = mounts["../grafana/dashboards"]
    for flavour in FLAVOURS:
        assert (GRAFANA / "provisioning" / flavour.name).is_dir()
        (provider,) = provisioning(flavour, "dashboards", "dashboards.yaml")["providers"]
        assert provider["options"]["path"] == f"{in_container}/{flavour.name}"
        assert (GRAFANA / "dashboards" / flavour.name).is_dir()


@pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda f: f.name)
def test_alert_rules_round_trip_and_use_the_catalogue(flavour):
    (group,) = unescape(provisioning(flavour, "alerting", "rules.yaml"))["groups"]
    assert group["folder"] and group["interval"] == f"{alerts.INTERVAL_SECONDS}s"
    assert [r["uid"] for r in group["rules"]] == [a.uid for a in alerts.ALERTS]
    for rule, alert in zip(group["rules"], alerts.ALERTS, strict=True):
        again = json.loads(json.dumps(Rule.from_json(rule), cls=JSONEncoder))
        assert {k: v for k, v in again.items() if k not in alerts.API_ONLY_KEYS} == rule
        query, threshold = rule["data"]
        assert query["model"]["expr"] == Q.render(Q.get(alert.query), "promql", window=alert.window)
        assert query["relativeTimeRange"]["from"] == alert.seconds
        assert rule["condition"] == threshold["refId"] == "B"
        (condition,) = threshold["model"]["conditions"]
        assert condition["evaluator"] == {"type": {">": "gt", "<": "lt"}[alert.op], "params": [alert.threshold]}
        # The summary names what the alert is about: its DAG, or its file (import errors); the scheduler
        # alert is deployment-wide.
        assert ("{{ $labels.dag_id }}" in rule["annotations"]["summary"]
                or "{{ $labels.filename }}" in rule["annotations"]["summary"]
                or alert.name == "AirflowSchedulerSilent")  # fmt: skip


def test_alerts_cover_the_conditions():
    queries = {a.query for a in alerts.ALERTS}
    assert {"dag_failure_ratio", "dag_late_seconds", "dag_run_overdue_seconds", "dag_file_import_errors",
            "failed_checks", "task_failures", "zero_rows_tasks"} <= queries  # fmt: skip


def test_negative_control_a_changed_or_missing_file_is_stale():
    path = "dashboards/local/overview.json"
    assert outputs.stale({**GENERATED, path: GENERATED[path] + " "}) == [path]
    assert outputs.stale({"dashboards/local/no-such.json": "{}"}) == ["dashboards/local/no-such.json"]
