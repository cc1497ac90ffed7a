"""Deliver the spool now: ``python -m otel_plugin replay`` (also ``airflow-otel replay``).

Payloads the plugin could not export (Collector down or not answering) wait in the spool
(``[otel_plugin] spool_dir``) and the next task process on the host sends them without user action. This
command sends them at once, with the same configuration (airflow.cfg, ``AIRFLOW__OTEL_PLUGIN__*``,
``OTEL_EXPORTER_OTLP_*``). It exits 0 when the spool is empty afterwards, 2 otherwise.
"""

from __future__ import annotations

import argparse
import time

from otel_plugin.core import config, transport
from otel_plugin.core.spool import Spool


class NotDelivered(Exception):
    """Payloads are still in the spool after the command ran."""


ERRORS = (config.ConfigError, NotDelivered)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to spend delivering (default 60)")


def run(args: argparse.Namespace) -> str:
    cfg = config.load()
    spool = Spool(cfg.spool_dir, cfg.spool_max_bytes)
    senders = {
        signal: transport.Sender(signal, endpoint, spool, cfg.export_timeout)
        for signal, endpoint in cfg.endpoints.items()
    }
    delivered = transport.replay(spool, senders, time.monotonic() + args.timeout)
    pending = spool.pending()
    summary = f"delivered {delivered} payloads from {spool.directory}; {pending} pending"
    if pending:
        raise NotDelivered(f"{summary}; is the Collector reachable (OTEL_EXPORTER_OTLP_ENDPOINT)?")
    return summary
