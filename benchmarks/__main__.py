"""Command line: ``python -m benchmarks [--full] [--only NAME ...] [--out PATH]``.

Runs the scenarios in one process, prints each table as it is produced and writes them, with the machine,
versions, load and command, into the section of ``--out`` that belongs to the mode (a quick run replaces
the quick section and leaves a full run's section alone, and the other way round; a run with ``--only``
has a section of its own per mode and set of scenarios).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import re
import shlex
import shutil
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import IO

from . import cardinality, concurrency, drive, jobs, overhead, peers, throughput
from .common import ROOT, Context, Table, load_average, machine

# name: (run, whether it needs the Pushgateway / StatsD exporter / benchmark Prometheus)
SCENARIOS = {
    "concurrency": (concurrency.run, True),
    "cardinality": (cardinality.run, True),
    "overhead": (overhead.run, False),
    "throughput": (throughput.run, False),
    "jobs": (jobs.run, True),
}
RESULTS = Path(__file__).with_name("RESULTS.md")
LOCK = Path(tempfile.gettempdir()) / "airflow-otel-bench.lock"
LOCK_WAIT_S = 3600.0
PREAMBLE = """# Benchmark results

Written by `python -m benchmarks` (`make bench` runs the quick mode). Each section below comes from ONE run
of one mode on this machine; the section says which mode, when, and how loaded the machine was (other
engineers run tests on the same 2 cores, so absolute times are pessimistic; counts are not affected).
"""


def _cpu_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _versions(bench: peers.Peers | None) -> dict[str, str]:
    env = dict(line.split("=", 1) for line in (ROOT / "compose" / "versions.env").read_text().splitlines()
               if re.match(r"^[A-Z_]+=", line))
    found = {
        "Collector (ours, builder)": env["OTELCOL_VERSION"],
        "Prometheus": f"{env['PROMETHEUS_VERSION']} (module version of Prometheus 3.x)",
        "VictoriaLogs": env["VICTORIALOGS_VERSION"],
        "Jaeger": env["JAEGER_VERSION"] + " (v2 binary)",
        "statsd_exporter": env["STATSD_EXPORTER_VERSION"],
    }
    if bench is not None:
        found["Pushgateway"] = peers.version_of(bench.binaries["pushgateway"])
    for package in ("opentelemetry-sdk", "prometheus-client", "statsd", "apache-airflow"):
        try:
            found[f"Python {package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[f"Python {package}"] = "not installed"
    return found


def _section(key: str, command: str, facts: dict[str, str], versions: dict[str, str],
             tables: list[Table]) -> str:
    mode, _, only = key.partition(", ")
    title = f"## {mode.capitalize()} mode" + (f", {only}" if only else "")
    lines = [f"<!-- {key} begin -->", title, "", f"Command: `{command}`", ""]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += ["", "Versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()), ""]
    lines += [table.markdown() for table in tables]
    lines.append(f"<!-- {key} end -->")
    return "\n".join(lines) + "\n"


def _write(out: Path, key: str, section: str) -> None:
    text = out.read_text() if out.exists() else PREAMBLE
    pattern = re.compile(rf"<!-- {re.escape(key)} begin -->.*?<!-- {re.escape(key)} end -->\n", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    out.write_text(text)


def _one_run_at_a_time(wait_s: float) -> IO[str]:
    """Hold the machine-wide benchmark lock: the peers' ports are fixed, and two runs at once (a `make bench`
    and the CI's quick-mode test, say) would read each other's pushes. Waits up to ``wait_s`` seconds."""
    lock = open(LOCK, "a+")  # noqa: SIM115 - held until the process exits
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SystemExit(f"another benchmark run still holds {LOCK} after {wait_s:.0f} s") from None
            print(f"waiting for another benchmark run to finish (lock {LOCK})", file=sys.stderr, flush=True)
            time.sleep(10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--full", action="store_true", help="the full sizes (default: the quick ones)")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only this scenario")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args(argv)
    names = args.only or list(SCENARIOS)
    lock = _one_run_at_a_time(LOCK_WAIT_S)
    drive.require_stack()
    command = shlex.join(["python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])])
    scratch = Path(tempfile.mkdtemp(prefix="airflow-otel-bench-"))
    ctx = Context(full=args.full, scratch=scratch, stamp=time.strftime("%m%d%H%M%S"))
    started, busy0, load0 = time.monotonic(), _cpu_busy(), load_average()
    facts = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), **machine(),
             "load average (1/5/15 min) at start": load0}
    tables: list[Table] = []
    bench = None
    failures = 0
    try:
        if any(SCENARIOS[name][1] for name in names):
            bench = peers.Peers(scratch).__enter__()
        for name in names:
            run, _ = SCENARIOS[name]
            drive.require_stack()
            began, watch = time.monotonic(), drive.Restarts()
            try:
                produced = run(ctx, bench)
            except (Exception, SystemExit) as err:  # keep the other scenarios' results; say what broke
                produced = []
                facts[f"{name}: FAILED"] = f"{type(err).__name__}: {err}"
                failures += 1
            restarted = ", ".join(watch.since()) or "none"
            facts[f"{name}: took, load after, stack services restarted meanwhile by other tests"] = (
                f"{time.monotonic() - began:.0f} s, {load_average()}, {restarted}")
            for table in produced:
                print(table.markdown(), flush=True)
            tables += produced
    finally:
        if bench is not None:
            bench.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    busy1 = _cpu_busy()
    facts["whole run"] = f"{time.monotonic() - started:.0f} s; load average at end {load_average()}"
    facts["all CPUs busy during the run (every process on the machine)"] = (
        f"{(busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]):.0%}")
    # A run of some scenarios only (--only) gets its own section and leaves the mode's full section alone.
    key = ctx.mode + (f", only {' + '.join(names)}" if args.only else "")
    _write(args.out, key, _section(key, command, facts, _versions(bench), tables))
    print(f"results written to {args.out}")
    lock.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
