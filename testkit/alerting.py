"""Helpers for alert tests against the native stack: a webhook receiver standing in for a pager, and
readers of Prometheus's and Alertmanager's alert APIs.

The shipped Alertmanager config (alertmanager/alertmanager.yml) POSTs to 127.0.0.1:5001/<severity>; the
receiver listens there for the test session and keeps every notification.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from testkit.stackutil import PROMETHEUS

ALERTMANAGER = os.environ.get("ALERTMANAGER_URL", "http://127.0.0.1:9093")
WEBHOOK_PORT = 5001


class WebhookReceiver:
    """Alertmanager's webhook notifications, as (path, payload, arrival time), in arrival order."""

    def __init__(self, port: int = WEBHOOK_PORT) -> None:
        self.received: list[tuple[str, dict[str, Any], float]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append((self.path, json.loads(body or b"{}"), time.time()))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def alerts(self) -> Iterator[tuple[str, dict[str, Any], float]]:
        """(path, one alert of a notification, arrival) for every alert ever delivered."""
        with self._lock:
            received = list(self.received)
        for path, payload, at in received:
            for alert in payload.get("alerts", []):
                yield path, alert, at

    def wait_for(
        self, match: Callable[[str, dict[str, Any]], bool], timeout: float, what: str
    ) -> tuple[str, dict, float]:
        """The first delivered alert (path, alert, arrival) that ``match`` accepts; AssertionError at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            for path, alert, at in self.alerts():
                if match(path, alert):
                    return path, alert, at
            if time.monotonic() >= deadline:
                seen = [(p, a["labels"].get("alertname"), a["status"], a["labels"]) for p, a, _ in self.alerts()]
                raise AssertionError(f"no webhook delivery of {what} after {timeout:.0f} s; delivered: {seen}")
            time.sleep(1)


def firing(alertname: str, **labels: str) -> Callable[[str, dict[str, Any]], bool]:
    return _matcher("firing", alertname, labels)


def resolved(alertname: str, **labels: str) -> Callable[[str, dict[str, Any]], bool]:
    return _matcher("resolved", alertname, labels)


def _matcher(status: str, alertname: str, labels: dict[str, str]) -> Callable[[str, dict[str, Any]], bool]:
    def match(_path: str, alert: dict[str, Any]) -> bool:
        got = alert.get("labels", {})
        return (alert.get("status") == status and got.get("alertname") == alertname
                and all(got.get(k) == v for k, v in labels.items()))  # fmt: skip

    return match


def prometheus_alerts(alertname: str | None = None) -> list[dict[str, Any]]:
    """Prometheus's pending and firing alerts (GET /api/v1/alerts), optionally of one rule."""
    body = requests.get(f"{PROMETHEUS}/api/v1/alerts", timeout=10).json()
    found = body["data"]["alerts"]
    return [a for a in found if alertname is None or a["labels"]["alertname"] == alertname]


def alertmanager_alerts() -> list[dict[str, Any]]:
    """Alertmanager's active alerts (GET /api/v2/alerts)."""
    return requests.get(f"{ALERTMANAGER}/api/v2/alerts", timeout=10).json()
