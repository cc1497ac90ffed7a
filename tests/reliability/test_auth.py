"""The plugin's side of a token-protected Collector (the Collector side, a push without the token is
refused, is tests/integration/test_collector_validate.py; its second Collector is reused here): the plugin
sends OTEL_EXPORTER_OTLP_HEADERS, a wrong token keeps the telemetry in the spool instead of losing it, and
the token never appears in the task's output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from testkit import harness as h
from testkit import stackutil as su
from tests.integration import test_collector_validate as collector_tests

pytestmark = pytest.mark.stack
otelcol = collector_tests.otelcol  # the fixture that finds (or builds) our Collector binary


@pytest.fixture
def protected(otelcol: Path, tmp_path: Path) -> Iterator[collector_tests.Instance]:
    proc, instance = collector_tests.start_collector(otelcol, tmp_path / "collector", {})
    yield instance
    collector_tests.stop(proc)


def finished(instance: collector_tests.Instance, dag_id: str) -> float:
    text = requests.get(f"http://127.0.0.1:{instance.exporter}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(h.FINISHED + "{") and f'dag_id="{dag_id}"' in line)


def test_wrong_token_keeps_the_spool_and_the_right_one_delivers_it(
    protected: collector_tests.Instance, spool: Path, run: tuple[str, str]
) -> None:
    dag_id, run_id = run
    endpoint = f"http://127.0.0.1:{protected.http}"
    wrong = h.plugin_env(spool, endpoint, OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20not-the-token")
    (done,) = h.run_tasks(h.task_specs(dag_id, run_id, ["a"]), wrong)
    assert h.spooled_records(spool) == {"logs": 2, "traces": 1}
    assert h.spool_files(spool)["metrics"] == 1
    assert "not-the-token" not in done.stderr

    right = h.plugin_env(spool, endpoint, OTEL_EXPORTER_OTLP_HEADERS=f"Authorization=Bearer%20{protected.token}")
    replayed = subprocess.run([sys.executable, "-m", "otel_plugin", "replay", "--timeout", "20"], env=right,
                              cwd=su.ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert replayed.returncode == 0, replayed.stderr
    assert protected.token not in replayed.stdout + replayed.stderr
    assert h.spool_files(spool) == {}
    assert su.wait_until(lambda: finished(protected, dag_id), ok=lambda v: v == 1, timeout=15, what="count") == 1
