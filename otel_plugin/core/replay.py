"""Deliver the spool now: ``python -m otel_plugin replay`` (also ``airflow-otel replay``).

Payloads the plugin could not export (Collector down or not answering) wait in the spool
(``[otel_plugin] spool_dir``) and the next task process on the host sends them without user action. This
command sends them at once, with the same configuration (airflow.cfg, ``AIRFLOW__OTEL_PLUGIN__*``,
``OTEL_EXPORTER_OTLP_*``). It exits 0 when the spool is empty afterwards, 2 otherwise.

On Kubernetes every pod spools to its own subdirectory of a node directory, and the node agent drains them
all (docs/kubernetes.md)::

    python -m otel_plugin replay --spool-root /var/lib/airflow-otel/spool --abandoned-after 600

There the process ids in in-flight file names belong to other PID namespaces, so a file a killed pod was
sending is taken over by age instead (``--abandoned-after`` seconds since it was claimed).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from otel_plugin.core import config, transport
from otel_plugin.core.spool import Spool


class NotDelivered(Exception):
    """Payloads are still in the spool after the command ran."""


ERRORS = (config.ConfigError, NotDelivered)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to spend delivering (default 60)")
    parser.add_argument("--spool-root", type=Path, default=None,
                        help="deliver every subdirectory of this directory (one spool per pod) instead of spool_dir")
    parser.add_argument("--abandoned-after", type=float, default=None, metavar="SECONDS",
                        help="take over in-flight files older than this, whatever their process id says "
                             "(for spools written from other PID namespaces)")


def _spools(cfg: config.PluginConfig, args: argparse.Namespace) -> list[Spool]:
    if args.spool_root is None:
        return [Spool(cfg.spool_dir, cfg.spool_max_bytes, args.abandoned_after)]
    root: Path = args.spool_root
    directories = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [Spool(directory, cfg.spool_max_bytes, args.abandoned_after) for directory in directories]


def run(args: argparse.Namespace) -> str:
    cfg = config.load()
    until = time.monotonic() + args.timeout
    delivered = pending = 0
    spools = _spools(cfg, args)
    for spool in spools:
        senders = {
            signal: transport.make_sender(signal, endpoint, spool, endpoint.timeout)
            for signal, endpoint in cfg.endpoints.items()
        }
        delivered += transport.replay(spool, senders, until)
        pending += spool.pending()
    where = args.spool_root or cfg.spool_dir
    summary = f"delivered {delivered} payloads from {where} ({len(spools)} spools); {pending} pending"
    if pending:
        raise NotDelivered(f"{summary}; is the Collector reachable (OTEL_EXPORTER_OTLP_ENDPOINT)?")
    return summary
