"""Scenario 4, throughput: the highest sustained rate of task runs through the Collector into Prometheus,
VictoriaLogs and Jaeger with nothing lost, and the CPU the Collector and the stores spend per 1,000 runs.

Steps of rising target rates, each held for a fixed time: SENDERS processes report paced task runs through
the plugin's real hooks (``drive.send_batched``, flushing about once a second), then the three stores are
read back for this step's DAGs and compared with what was sent (Prometheus: the task_instance.finished sum;
VictoriaLogs: 2 events per run; Jaeger: 1 span per run). CPU from /proc of each stack process, before and
after the step including the read-back wait; the senders' CPU from getrusage of the finished children.
The steps stop at the first loss, or when the senders cannot reach the target any more (they are Python
processes on the same 2 cores, so that is where the ceiling may be).
"""

from __future__ import annotations

import functools
import resource
import time

from testkit import stackutil
from testkit.plugin import plugin_environ
from testkit.procs import run_released
from testkit.wait import poll

from . import drive
from .common import Context, Table

SENDERS = 2
QUICK = {"rates": (50, 100), "seconds": 10}
FULL = {"rates": (50, 100, 200, 400, 800, 1600), "seconds": 30}
REACHED = 0.9  # a step counts as sustained when the senders achieved this share of the target rate


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _step(ctx: Context, rate: int, seconds: int) -> tuple[list[object], bool, float]:
    prefix = f"{ctx.dag_prefix('tput')}_{rate}ps"
    n = rate * seconds
    runs = list(drive.spread_runs(prefix, n))
    shares = [runs[i::SENDERS] for i in range(SENDERS)]
    every = max(20, rate // SENDERS)  # about one flush per second per sender
    cpu0, sender0 = drive.stack_cpu(), _children_cpu()
    began = time.monotonic()
    with plugin_environ(ctx.scratch / "spool-throughput", budget=15):
        released = run_released(lambda i: functools.partial(drive.send_batched, shares[i], every, rate / SENDERS),
                                SENDERS, 10 * seconds + 120)
    took = time.monotonic() - began
    sender_cpu = _children_cpu() - sender0
    metrics = poll(lambda: drive.finished_total(prefix), lambda v: v >= n, timeout=60, settle=15)
    events = poll(lambda: drive.event_count(prefix), lambda v: v >= 2 * n, timeout=90, settle=15)
    traces = drive.trace_ids(runs)
    spans = poll(lambda: stackutil.span_count(traces), lambda v: v >= n, timeout=180, settle=20, interval=3)
    cpu1 = drive.stack_cpu()
    achieved = n / took
    lossless = metrics == n and events == 2 * n and spans == n and released.failed == 0
    per_k = [f"{(cpu1[svc] - cpu0[svc]) / n * 1000:.2f}" for svc in drive.STORES]
    row = [rate, f"{achieved:,.0f}", f"{metrics:,} / {n:,}", f"{events:,} / {2 * n:,}", f"{spans:,} / {n:,}",
           "yes" if lossless else "NO", " / ".join(per_k), f"{sender_cpu / n * 1000:.2f}"]
    return row, lossless and achieved >= REACHED * rate, achieved


def run(ctx: Context, _bench: object) -> list[Table]:
    plan = FULL if ctx.full else QUICK
    table = Table(
        f"Throughput: task runs per second held for {plan['seconds']} s per step ({ctx.mode} mode)",
        ["target runs/s", "achieved runs/s", "Prometheus sum / sent", "VictoriaLogs events / expected",
         "Jaeger spans / sent", "nothing lost", "CPU s per 1,000 runs: " + " / ".join(drive.STORES),
         "CPU s per 1,000 runs: senders"])
    best, sustained, last = None, True, (0.0, False)
    for rate in plan["rates"]:
        watch = drive.Restarts()
        row, sustained, achieved = _step(ctx, rate, plan["seconds"])
        last = (achieved, row[5].startswith("yes"))
        restarted = watch.since()
        if restarted:
            row[5] += f" (DISTURBED: {', '.join(restarted)} restarted)"
        table.rows.append(row)
        if not sustained:
            break
        best = achieved
    if sustained:
        stopped = "every planned step passed: the limit is higher"
    elif last[1]:
        stopped = (f"the last step lost nothing at {last[0]:,.0f} runs/s but fell short of its target: the "
                   "senders, not the stack, were the limit there")
    else:
        stopped = "the last step lost data"
    table.notes += [
        f"Highest sustained rate with nothing lost in this run: {f'{best:,.0f} task runs/s' if best else 'none'} "
        f"({stopped}).",
        f"{SENDERS} sender processes pace their share of the target rate through the real hooks and flush about "
        "once a second; each run is 2 events, 1 span and its metric points. CPU includes the read-back wait "
        "after each step (idle stores cost little) and whatever other tests made the stack do meanwhile.",
    ]
    return [table]
