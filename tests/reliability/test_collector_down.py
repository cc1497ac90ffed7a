"""The Collector is down or hangs when a task ends: the task still exits within the flush budget, what was
not exported waits in the spool, and it is delivered exactly once later, by the next task process on the
host or by ``python -m otel_plugin replay``. One test really stops the shared Collector (and so also shows
what a Collector restart does to the aggregated counters)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit import harness as h
from testkit import stackutil as su

# The hooks may hold the task for the budget plus the flush thread's join margin (0.25 s) and a little
# scheduling. The whole exit adds interpreter teardown, the same with the plugin disabled: about 0.7 s when
# the process has a core to itself, seconds on a loaded machine. So the exit is bounded by the budget plus
# the teardown of a bare task process timed right after (harness.bare_exit_delay) plus EXIT_SLACK_S.
HOOK_SLACK_S = 0.5
EXIT_SLACK_S = 1.0


def assert_within_budget(done: h.Finished, budget: float, bare: float) -> None:
    print(f"hooks {done.hooks:.2f} s, exit delay {done.exit_delay:.2f} s (budget {budget} s; "
          f"a bare task process's exit delay {bare:.2f} s)")
    assert done.hooks <= budget + HOOK_SLACK_S
    assert done.exit_delay <= budget + bare + EXIT_SLACK_S


@pytest.mark.parametrize(
    ("fault", "budget", "task_seconds"),
    [
        ("refused", 2.0, 0.0),
        ("black_hole", 2.0, 0.0),
        ("black_hole", 0.5, 0.0),
        # The SDK's log worker exports the running event 1 s after it is emitted: when the task ends it is
        # still waiting for the black hole, holding the export lock that the exit flush needs.
        ("black_hole", 2.0, 1.5),
    ],
)
def test_task_exits_within_the_flush_budget_and_keeps_everything(
    fault: str, budget: float, task_seconds: float, spool: Path, run: tuple[str, str]
) -> None:
    dag_id, run_id = run
    with h.BlackHole() as hole:
        endpoint = hole.url if fault == "black_hole" else f"http://127.0.0.1:{h.free_port()}"
        specs = h.task_specs(dag_id, run_id, ["a"], task_seconds=task_seconds)
        (done,) = h.run_tasks(specs, h.plugin_env(spool, endpoint, budget))

    assert_within_budget(done, budget, h.bare_exit_delay(spool.parent / "bare-spool"))
    assert h.spool_files(spool).keys() == {"logs", "traces", "metrics"}
    assert h.spooled_records(spool) == {"logs": 2, "traces": 1}  # running + success event, the task's span


@pytest.mark.stack
@pytest.mark.usefixtures("stack")
def test_spool_is_delivered_by_a_later_task_after_a_collector_outage(spool: Path, run: tuple[str, str]) -> None:
    dag_id, run_id = run
    env = h.plugin_env(spool)
    started = time.time()
    # An earlier run's task "t", delivered normally: its counter series exists before the restart.
    h.run_tasks(h.task_specs(dag_id, f"{run_id}_earlier", ["t"]), env)
    su.wait_until(lambda: su.finished_total(dag_id), ok=lambda v: v == 1, timeout=30, what="the first count")

    with h.outage("collector"):
        down = h.run_tasks(h.task_specs(dag_id, run_id, ["t", "b", "c"], dag_run="success"), env, parallel=1)
    bare = h.bare_exit_delay(spool.parent / "bare-spool")  # once for the three tasks timed one after the other
    for done in down:
        assert_within_budget(done, 2.0, bare)
    assert h.spooled_records(spool) == {"logs": 7, "traces": 4}

    # A later task on the same host (same spool) delivers its own telemetry and the backlog.
    h.run_tasks(h.task_specs(dag_id, run_id, ["later"]), env)
    assert h.spool_files(spool) == {}
    # The restart reset the Collector's aggregated counters: they hold the 4 tries reported since.
    want = dataclasses.replace(h.expected_for(tasks=4), finished=4.0)
    assert h.wait_exactly(dag_id, run_id, want) == want

    # Task t's series: 1 before the restart, a reset to 0, 1 after. increase() over a window spanning the
    # restart counts both tries, evaluated at the last sample (no extrapolation past it); all of the
    # DAG's series together count the 5 tries.
    series = f'{h.FINISHED}{{dag_id="{dag_id}",task_id="t"}}'
    samples = su.prom_samples(series, window=f"{int(time.time() - started) + 60}s")
    values = [v for _, v in samples]
    assert 1 in values and 0 in values[values.index(1) :], f"expected a reset to 0 after the restart: {values}"
    at, window = samples[-1][0], f"{int(time.time() - started) + 60}s"
    assert su.prom_value(f"increase({series}[{window}])", at=at) == pytest.approx(2, abs=1e-9)
    total = f'sum(increase({h.FINISHED}{{dag_id="{dag_id}"}}[{window}]))'
    assert su.prom_value(total, at=at) == pytest.approx(5, abs=1e-9)


def replay(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_plugin", "replay", "--timeout", "20"], env=env,
                          cwd=su.ROOT, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.stack
@pytest.mark.usefixtures("stack")
def test_replay_command_delivers_what_a_hung_collector_left_behind(spool: Path, run: tuple[str, str]) -> None:
    dag_id, run_id = run
    with h.BlackHole() as hole:
        h.run_tasks(h.task_specs(dag_id, run_id, ["a", "b"], dag_run="failed"), h.plugin_env(spool, hole.url))
        still_hung = replay(h.plugin_env(spool, hole.url))
    assert still_hung.returncode == 2, still_hung.stderr
    assert "pending" in still_hung.stderr
    assert h.spooled_records(spool) == {"logs": 5, "traces": 3}

    delivered = replay(h.plugin_env(spool))
    assert delivered.returncode == 0, delivered.stderr
    assert delivered.stdout.startswith("delivered ")
    assert h.spool_files(spool) == {}
    assert h.wait_exactly(dag_id, run_id, h.expected_for(tasks=2)) == h.expected_for(tasks=2)
