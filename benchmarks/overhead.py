"""Scenario 3, overhead on the task: what each listener hook adds, and how long a task's exit is held.

Hook time: in one process with the task-process role, N task tries through the real hooks against the
stack's Collector, timing each call (the end hooks include the plugin's synchronous flush, as in a task);
"no plugin" is the same timing harness around an empty hook (what Airflow pays when no listener is
registered). Exit delay: a fresh Python process per trial (``benchmarks.taskexit``) prints when its task's
work ends, reports the end and exits normally; the parent notes when the process is gone. Three Collector
conditions: up, refusing connections (a closed port), accepting but never answering (``peers.black_hole``);
compared with the OTel SDK's defaults measured the same way.
"""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
import sys
import time
from collections.abc import Callable

from testkit.plugin import plugin_environ

from . import drive, peers
from .common import ROOT, Context, Table, in_child, median, ms, percentile

QUICK_N, FULL_N = 100, 1000
QUICK_TRIALS, FULL_TRIALS = 3, 10
TRIAL_TIMEOUT_S = 120.0
HOOKS = ("running", "success", "failed")


def _timed(call: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def _hook_times(n: int, plugin: bool) -> dict[str, list[float]]:
    """Seconds per call of each hook over n tries of each end state (run in a child)."""
    from otel_plugin.airflow import listener

    times: dict[str, list[float]] = {hook: [] for hook in HOOKS}
    if plugin:
        drive.report(drive.Run("bench_overhead", "warm_up", "manual__warm_up", "success"))  # creates the pipeline
    for i in range(2 * n):
        state = "success" if i % 2 == 0 else drive.FAILED
        run = drive.Run("bench_overhead", f"t{i % 20:02d}", f"manual__{i:06d}", state)
        start = dt.datetime.now(dt.timezone.utc)
        running = drive.task_instance(run, start, None)
        done = drive.task_instance(run, start, dt.datetime.now(dt.timezone.utc))
        if not plugin:
            times["running"].append(_timed(lambda: None))
            times[state].append(_timed(lambda: None))
            continue
        times["running"].append(_timed(functools.partial(listener.on_task_instance_running, "queued", running)))
        end = listener.on_task_instance_failed if state == drive.FAILED else listener.on_task_instance_success
        times[state].append(_timed(functools.partial(end, "running", done)))
    return times


def exit_delays(kind: str, trials: int, program: str = "benchmarks.taskexit",
                failures: list[int] | None = None) -> list[float | None]:
    """Seconds from the end of the work of a process (``python -m <program> <kind>``, which prints when its
    work ends) to the process being gone; None: killed at the timeout. One trial at a time: parallel trials
    on 2 cores inflated every column (measured: 1.5 s instead of 0.4 s without any plugin). Non-zero exit
    codes are appended to ``failures`` when given."""
    delays: list[float | None] = []
    for _ in range(trials):
        proc = subprocess.Popen([sys.executable, "-m", program, kind], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = proc.stdout.readline() if proc.stdout else ""
        try:
            code = proc.wait(TRIAL_TIMEOUT_S)
            delays.append(time.time() - float(line) if line.strip() else None)
            if code and failures is not None:
                failures.append(code)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            delays.append(None)
    return delays


def summary(delays: list[float | None]) -> str:
    done = [d for d in delays if d is not None]
    if not done:
        return f"> {TRIAL_TIMEOUT_S:.0f} s (all killed)"
    text = f"{ms(median(done))} (max {ms(max(done))})"
    killed = len(delays) - len(done)
    return text + (f", {killed} killed at {TRIAL_TIMEOUT_S:.0f} s" if killed else "")


def added(delays: list[float | None], baseline: list[float | None]) -> str:
    done, base = [d for d in delays if d is not None], [d for d in baseline if d is not None]
    if not base:
        return "n/a"
    return ms(median(done) - median(base)) if len(done) == len(delays) else f"> {TRIAL_TIMEOUT_S:.0f} s"


def run(ctx: Context, _bench: peers.Peers | None) -> list[Table]:
    n = FULL_N if ctx.full else QUICK_N
    trials = FULL_TRIALS if ctx.full else QUICK_TRIALS
    spool = ctx.scratch / "spool-overhead"
    with plugin_environ(spool):
        with_plugin = in_child(lambda: _hook_times(n, True), timeout=600)
    floor = in_child(lambda: _hook_times(n, False), timeout=600)
    hooks = Table(f"Overhead: time each listener hook adds to a task, {n} calls each ({ctx.mode} mode)",
                  ["hook", "no plugin median / p99", "plugin median / p99", "added median / p99"])
    for hook in HOOKS:
        a, b = floor[hook], with_plugin[hook]
        hooks.rows.append([f"on_task_instance_{hook}", f"{ms(median(a))} / {ms(percentile(a, 99))}",
                           f"{ms(median(b))} / {ms(percentile(b, 99))}",
                           f"{ms(median(b) - median(a))} / {ms(percentile(b, 99) - percentile(a, 99))}"])
    hooks.notes.append("The success and failed hooks include the plugin's flush of the task's event, span and "
                       "metrics to the Collector (3 OTLP/HTTP requests), which a task process makes once, at "
                       "its end; the running hook only queues its event.")

    exits = Table(f"Overhead: task-exit delay, {trials} processes per cell ({ctx.mode} mode)",
                  ["Collector", "no plugin", "this plugin (flush budget 2 s)", "OTel SDK defaults",
                   "added by plugin / by SDK (medians)"])
    with peers.black_hole() as hole:
        conditions = {"up": drive.stackutil.COLLECTOR_OTLP_HTTP,
                      "refusing (closed port)": f"http://127.0.0.1:{peers.closed_port()}",
                      "accepting, never answering": f"http://127.0.0.1:{hole}"}
        for name, endpoint in conditions.items():
            with plugin_environ(spool, endpoint=endpoint):
                none, plugin, sdk = (exit_delays(kind, trials) for kind in ("none", "plugin", "sdk"))
                exits.rows.append([name, summary(none), summary(plugin), summary(sdk),
                                   f"{added(plugin, none)} / {added(sdk, none)}"])
    exits.notes += [
        "Delay = from the moment the task's work ends (printed by the task process) until the process is gone "
        "(the parent's waitpid returns): the end hook or the SDK's record calls, then atexit handlers. Median "
        "(and max) over the trials, run one after the other. Every column includes Airflow's own exit handlers "
        "(each task process loads Airflow's configuration, as a real one has); an 'added' figure smaller "
        "than the spread of the no-plugin column is noise from the shared machine.",
        "OTel SDK defaults: OTLP/HTTP exporters with their default 10 s timeout and retries, Batch span/log "
        "processors, PeriodicExportingMetricReader, shutdown in the SDK's own atexit handler. The plugin: flush "
        "budget 2 s for all signals together, undelivered payloads to the spool for the next process.",
    ]
    return [hooks, exits]
