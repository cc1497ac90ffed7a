"""Command line of the plugin: ``python -m otel_plugin lookup|replay|emit ...``, also installed as ``airflow-otel``.

``emit`` is the job side (no Airflow needed): see ``otel_plugin.job.cli``.
"""

from __future__ import annotations

import argparse
import sys

from otel_plugin.core import replay
from otel_plugin.job import cli
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
    emit = commands.add_parser(
        "emit",
        help="record a counter, histogram value, fact or span into the task's run (job side)",
        description=(cli.__doc__ or "").split("\n\n")[0],
    )
    cli.add_arguments(emit)
    args = parser.parse_args(argv)
    if args.command == "emit":
        try:
            return cli.run(args)
        except cli.UsageError as err:
            print(f"airflow-otel emit: error: {err}", file=sys.stderr)
            return 2
    command = {"lookup": lookup, "replay": replay}[args.command]
    try:
        print(command.run(args))
    except command.ERRORS as err:
        print(f"airflow-otel: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
