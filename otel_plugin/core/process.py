"""What the plugin keeps per process, in one object with one reset.

Usage::

    from otel_plugin.core import process

    state = process.current()  # this process's state; a forked child gets a fresh one
    process.reset()  # forget everything (tests)

Why one object: executors, task supervisors and Celery's prefork pool fork processes while the plugin's
state is alive. ``current()`` compares the pid, so a child never reuses its parent's configuration,
pipeline, role, facts, deadline, cool-downs or warnings, and no module keeps a pid check of its own. The
modules own what they put here (the pipeline module creates the pipeline, the recorder sets the role); this
module only holds it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from otel_plugin.core.config import PluginConfig
    from otel_plugin.core.pipeline import Pipeline


class _Unset:
    """Not read or created yet (None is a real value: disabled)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
T = TypeVar("T")


@dataclass(eq=False)
class ProcessState:
    pid: int = field(default_factory=os.getpid)
    lock: threading.Lock = field(default_factory=threading.Lock)  # guards lazy creation of what is below
    # core
    config: PluginConfig | None = UNSET  # None: invalid (one error logged)
    pipeline: Pipeline | None = UNSET  # None: disabled
    deadline: float | None = None  # monotonic "finish by" of the flush in progress (transport.DEADLINE)
    down_until: dict[str, float] = field(default_factory=dict)  # per endpoint: fail fast until (transport)
    warned: set[object] = field(default_factory=set)  # warn-once keys, each module its own tuples
    # Airflow listener side (otel_plugin.airflow.recorder)
    role: str | None = None  # "task", "service", "job" (a Job whose runner has not named it yet)
    job: object | None = None
    open_task: object | None = None  # running hook fired here, no terminal hook yet
    emitters: Any = None  # the recorder's emitters for ``pipeline``
    reported_tries: Any = None  # tries this process's terminal hooks reported, by run (reconcile)
    # in-task API (otel_plugin.api): the current task's facts and context
    task: Any = None
    # job side (otel_plugin.job)
    job_runtime: Any = None
    job_push: Any = None  # push_to_collector's cumulative-to-delta state


_state: ProcessState | None = None
_lock = threading.Lock()


def current() -> ProcessState:
    """This process's state, created on first use and anew in a forked child."""
    global _state
    state = _state
    if state is not None and state.pid == os.getpid():
        return state
    with _lock:
        if _state is None or _state.pid != os.getpid():
            _state = ProcessState()
        return _state


def setdefault(name: str, factory: Callable[[], T]) -> T:
    """The state's ``name``, made by ``factory`` on its first use in this process (fields that start as None)."""
    state = current()
    value = getattr(state, name)
    if value is None:
        with state.lock:
            value = getattr(state, name)
            if value is None:
                value = factory()
                setattr(state, name, value)
    return value


def reset() -> None:
    """Forget everything this process kept (tests; a forked child needs no call: its pid differs)."""
    global _state
    with _lock:
        _state = None


def _after_fork_in_child() -> None:
    # The child has one thread: a lock another thread held at the fork would never be released.
    global _lock, _state
    _lock, _state = threading.Lock(), None


os.register_at_fork(after_in_child=_after_fork_in_child)
