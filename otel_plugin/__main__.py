"""Command line of the plugin: ``python -m otel_plugin lookup|replay ...``, also installed as ``airflow-otel``."""

from __future__ import annotations

import argparse
import sys

from otel_plugin.core import replay
from otel_plugin.readback import lookup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow-otel", description="Read back what the Airflow OTel plugin sent.")
    commands = parser.add_subparsers(dest="command", required=True)
    lookup.add_arguments(
        commands.add_parser(
            "lookup",
            help="a DAG run's timeline, trace and queries",
            description=(lookup.__doc__ or "").split("\n\n")[0],
        )
    )
    replay.add_arguments(
        commands.add_parser(
            "replay",
            help="deliver payloads waiting in the spool now",
            description=(replay.__doc__ or "").split("\n\n")[0],
        )
    )
    args = parser.parse_args(argv)
    command = {"lookup": lookup, "replay": replay}[args.command]
    try:
        print(command.run(args))
    except command.ERRORS as err:
        print(f"airflow-otel: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
