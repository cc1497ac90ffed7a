"""Processes released at one moment: the barrier behind every "N processes report at once" test and benchmark.

``run_processes`` (tests): forkserver children, each given a ``Gate`` to wait at once its SDK is set up.
``run_released`` (benchmarks): forked children; child i runs ``setup(i)`` and, once released, what it returned;
each stamps its release time, so the spread shows how close together the sends really were.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from multiprocessing.context import BaseContext
from typing import Any

SENDER_TIMEOUT = 300.0  # seconds for a batch of processes to start, meet and finish


class Gate:
    """A start line: each process reports ready, then all are released at once."""

    def __init__(self, ctx: BaseContext, timeout: float = SENDER_TIMEOUT) -> None:
        self.ready = ctx.Value("i", 0)
        self.go = ctx.Event()
        self.timeout = timeout

    def wait(self) -> None:
        """In a child, once it is set up: report ready and wait for the release."""
        with self.ready.get_lock():
            self.ready.value += 1
        if not self.go.wait(self.timeout):
            raise TimeoutError("process was never released")


def _release(procs: Sequence[Any], gate: Gate, deadline: float) -> None:
    """Start every process, release them together once all are ready, join them; kill what outlives the
    deadline. Fails if one exits before the start or not all get ready in time."""
    try:
        for proc in procs:
            proc.start()
        while gate.ready.value < len(procs):
            early = [proc.exitcode for proc in procs if proc.exitcode is not None]
            if early or time.monotonic() > deadline:
                raise AssertionError(f"only {gate.ready.value} of {len(procs)} processes reached the start "
                                     f"(exit codes of those that ended early: {early})")
            time.sleep(0.01)
        gate.go.set()
        for proc in procs:
            proc.join(max(0.0, deadline - time.monotonic()))
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join()


def run_processes(target: Callable[..., None], args_list: Sequence[tuple[Any, ...]],
                  timeout: float = SENDER_TIMEOUT) -> None:
    """Run target(gate, *args) in one new OS process per args tuple, all released at the same moment.

    Every child sets up its SDK first and then waits at the gate, so the sends really overlap.
    """
    # forkserver: every sender is a fresh OS process forked from a clean server that imported the target's
    # module (and so the SDK) once; spawn would re-import it per process, about 1 s of CPU each on 2 cores.
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([target.__module__])
    gate = Gate(ctx, timeout)
    procs = [ctx.Process(target=target, args=(gate, *args)) for args in args_list]
    _release(procs, gate, time.monotonic() + timeout)
    failed = [proc.exitcode for proc in procs if proc.exitcode != 0]
    assert not failed, f"{len(failed)} of {len(procs)} processes failed: exit codes {failed}"


@dataclasses.dataclass
class Released:
    """What a barrier run measured: when each child was released and how each ended."""

    release_times: list[float]
    exit_codes: list[int | None]

    @property
    def spread_ms(self) -> float:
        times = [t for t in self.release_times if t > 0]
        return (max(times) - min(times)) * 1000 if times else float("nan")

    @property
    def failed(self) -> int:
        return sum(1 for code in self.exit_codes if code != 0)


def run_released(setup: Callable[[int], Callable[[], object]], count: int, timeout: float) -> Released:
    """Fork ``count`` children; child i runs ``setup(i)`` (a task's life up to its last moment), waits at
    the gate with all the others, then runs what setup returned (the report under test).

    Fork (not spawn): children inherit the imported modules, so 1,000 of them start in seconds and share
    memory pages; the parent must hold no threads or live OTel pipelines when it calls this. Children still
    alive at the deadline are killed and count as failed.
    """
    ctx = multiprocessing.get_context("fork")
    gate = Gate(ctx, timeout)
    stamps = ctx.Array("d", count)

    def child(index: int) -> None:
        action = setup(index)
        try:
            gate.wait()
        except TimeoutError:
            os._exit(3)
        stamps[index] = time.time()
        action()

    procs = [ctx.Process(target=child, args=(i,), daemon=True) for i in range(count)]
    _release(procs, gate, time.monotonic() + timeout)
    return Released(stamps[:], [proc.exitcode for proc in procs])


def in_fork(report: Callable[[], Any]) -> Any:
    """Call ``report`` in a forked child (a bare ``os.fork``, as executors and supervisors do); what it
    returned, through JSON."""
    import json

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.write(write, json.dumps(report()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    os.waitpid(pid, 0)
    return json.loads(text)
