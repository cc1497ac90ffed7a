"""The Kubernetes spool design of docs/kubernetes.md, measured on one machine: a task "pod" (its own PID
namespace, spooling to its subdirectory of a node directory) is killed with SIGKILL after its tasks reached
their terminal state, while its exports hang; a separate process, the node agent's replayer in another PID
namespace, delivers everything it left, exactly once.

The pod's in-flight files carry a process id of the pod's namespace (1 here), which is alive in the
replayer's namespace (init): going by pids, the replayer would never take them over. It goes by age.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit import harness as h
from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]


def start_pod(spec: dict, env: dict[str, str]) -> subprocess.Popen[str]:
    """A task process as PID 1 of a new PID namespace, as in a container; --kill-child: it dies with us."""
    assert shutil.which("unshare"), "util-linux unshare is needed to give the task its own PID namespace"
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "testkit.taskproc",
         json.dumps(spec)],
        env=env, cwd=su.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def inflight(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".inflight-" in p.name) if directory.is_dir() else []


def replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_plugin", "replay", "--timeout", "30", *args], env=env,
                          cwd=su.ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_node_replayer_delivers_what_a_killed_pod_left_in_flight(tmp_path: Path, run: tuple[str, str]) -> None:
    dag_id, run_id = run
    root = tmp_path / "node-spool"
    pod_dir = root / "airflow-task-pod-1"
    # The tasks run 1.5 s: their running events are exported in the background while they run.
    spec = {"dag_id": dag_id, "run_id": run_id, "dag_run": "success", "task_seconds": 1.5,
            "tasks": [{"task_id": "a", "state": "success"}, {"task_id": "b", "state": "success"}]}

    # The agent hangs; the pod is killed while its exit flush waits for it (logs and spans in flight).
    with h.BlackHole() as hole:
        pod = start_pod(spec, h.plugin_env(pod_dir, hole.url, budget=10.0))
        try:
            su.wait_until(lambda: {n.split(".")[1] for n in inflight(pod_dir)}, ok=lambda s: {"logs", "traces"} <= s,
                          timeout=180, interval=0.2, what="the pod's exports in flight")
        finally:
            os.kill(pod.pid, signal.SIGKILL)  # the pod ends; --kill-child takes the task process with it
            pod.communicate(timeout=30)
    left = inflight(pod_dir)
    assert left and all(name.endswith(".inflight-1") for name in left), left  # PID 1 of the pod's namespace
    spooled = h.spooled_records(pod_dir)
    print(f"in the pod's spool at the kill: {spooled} (of 5 events, 3 spans sent; the rest was in its memory)")

    node_env = h.plugin_env(tmp_path / "unused", su.COLLECTOR_OTLP_HTTP)
    by_pid = replay(node_env, "--spool-root", str(root))
    assert by_pid.returncode == 0, by_pid.stderr
    assert inflight(pod_dir) == left  # pid 1 is alive here (init): not taken over, and nothing sent twice

    time.sleep(1.5)
    by_age = replay(node_env, "--spool-root", str(root), "--abandoned-after", "1")
    assert by_age.returncode == 0, by_age.stderr
    assert by_age.stdout.startswith(f"delivered {len(left)} payloads"), by_age.stdout
    assert h.spool_files(pod_dir) == {}
    # Exactly what reached the node's spool, once.
    want = (spooled["logs"], spooled["traces"])
    def stored() -> tuple[int, int]:
        got = h.arrived(dag_id, run_id, counts=False)
        return got.events, got.spans

    su.wait_until(stored, ok=lambda got: got == want, timeout=90, interval=1, what=f"{want} events and spans")
    time.sleep(10)
    assert stored() == want
