"""``airflow-otel emit``: a counter increment, a histogram value, a fact or a span from a shell script.

For container entrypoints and scripts started by a task (with ``otel_plugin.api.job_env()`` in their
environment, or by Airflow itself)::

    airflow-otel emit counter rows_processed 1200 --label source=s3
    airflow-otel emit histogram batch_seconds 3.2 --unit s
    airflow-otel emit fact output=s3://bucket/part-0001.parquet rejected_file=/tmp/bad.csv
    airflow-otel emit span "load partitions" -- ./load.sh --all      # runs the command inside the span
    airflow-otel emit span "download" --start 1764590000.5 --end 1764590012

Each call is one job process: it records, writes the job's event, flushes within the flush budget and
exits. Exit code 0 also when the Collector is down (the data waits in the spool) or the environment has no
run context (a warning says so: telemetry never fails the script); 2 for a malformed command line; with
``-- COMMAND``, the command's own exit code.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from otel_plugin.core.custom_metrics import check_name, check_unit
from otel_plugin.core.errors import ErrorInfo
from otel_plugin.job import runtime


class UsageError(ValueError):
    """A malformed emit command line; the message is one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--job", help="the job's name (default: $AIRFLOW_OTEL_JOB, else 'emit')")
    kinds = parser.add_subparsers(dest="kind", required=True)
    for kind in ("counter", "histogram"):
        sub = kinds.add_parser(kind, help=f"add a value to a {kind}")
        sub.add_argument("name")
        sub.add_argument("value", type=float, nargs="?" if kind == "counter" else None,
                         default=1.0 if kind == "counter" else None)
        sub.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        sub.add_argument("--unit", default="")
        sub.add_argument("--description", default="")
    fact = kinds.add_parser("fact", help="attach facts to the job's event")
    fact.add_argument("facts", nargs="+", metavar="KEY=VALUE")
    span = kinds.add_parser("span", help="a span under the task's span: around a command, or with given times")
    span.add_argument("name")
    span.add_argument("--start", type=float, help="start, seconds since the epoch")
    span.add_argument("--end", type=float, help="end, seconds since the epoch (default: now)")
    span.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE")
    span.add_argument("--error", help="mark the span failed with this message")
    span.add_argument("argv", nargs="*", metavar="-- COMMAND", help="a command to run inside the span")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} must be KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def run(args: argparse.Namespace) -> int:
    """Record what the arguments say, finish the job process (bounded flush); the exit code."""
    if args.job:
        os.environ["AIRFLOW_OTEL_JOB"] = args.job
    elif not os.environ.get("AIRFLOW_OTEL_JOB"):
        os.environ["AIRFLOW_OTEL_JOB"] = "emit"
    code = 0
    if args.kind in ("counter", "histogram"):
        problem = check_name(args.name) or check_unit(args.unit)
        if problem:
            raise UsageError(problem)
    rt = runtime.get()
    if rt.context is None:
        print("airflow-otel emit: warning: no Airflow run context in the environment (start the process with "
              "otel_plugin.api.job_env()); nothing recorded", file=sys.stderr)
        return 0
    if args.kind in ("counter", "histogram"):
        from otel_plugin import api

        labels = _pairs(args.label, "--label")
        if args.kind == "counter":
            api.counter(args.name, args.unit, args.description).add(args.value, labels)
        else:
            api.histogram(args.name, args.unit, args.description).record(args.value, labels)
    elif args.kind == "fact":
        for key, value in _pairs(args.facts, "a fact").items():
            rt.set_fact(key, value)
    else:
        code = _span(rt, args)
    rt.finish()
    return code


def _span(rt: runtime.JobRuntime, args: argparse.Namespace) -> int:
    attributes = _pairs(args.attr, "--attr")
    command = args.argv
    if command:
        start = time.time_ns()
        try:
            code = subprocess.call(command)
        except OSError as exc:
            print(f"airflow-otel emit: cannot run {command[0]!r}: {exc}", file=sys.stderr)
            code = 127
        error = args.error or (f"exit code {code}" if code else None)
        rt.record_span(args.name, start, time.time_ns(), {**attributes, "exit_code": code}, error)
        if code:
            rt.error = ErrorInfo(type="ExitCode", message=f"{command[0]} exited with {code}")
        return code
    if args.start is None:
        raise UsageError("emit span needs --start SECONDS or -- COMMAND")
    end = args.end if args.end is not None else time.time()
    if end < args.start:
        raise UsageError("--end is before --start")
    rt.record_span(args.name, int(args.start * 1e9), int(end * 1e9), attributes, args.error)
    return 0
