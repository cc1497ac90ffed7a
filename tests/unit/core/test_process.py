"""One per-process state (otel_plugin.core.process): one reset, and a forked child never sees its parent's."""

from __future__ import annotations

import os

from otel_plugin import api
from otel_plugin.airflow import recorder
from otel_plugin.core import config, process, transport
from testkit.procs import in_fork


def _view() -> dict:
    state = process.current()
    return {
        "pid_matches": state.pid == os.getpid(),
        "role": recorder.role(),
        "rows": api.take_facts().rows_read,
        "down": transport.down_until("collector:4318") > 0,
        "deadline_set": transport.DEADLINE.remaining(99.0) < 99.0,
        "config_read": state.config is not process.UNSET,
        "warned": sorted(map(str, state.warned)),
    }


def _dirty() -> None:
    recorder.set_role(object())  # a task process
    api.record_rows(read=5)
    transport.mark_down("collector:4318")
    transport.DEADLINE.set(0.0)
    config.get()
    process.current().warned.add("something")


FRESH = {"pid_matches": True, "role": None, "rows": None, "down": False, "deadline_set": False, "config_read": False,
         "warned": []}  # fmt: skip


def test_a_forked_child_starts_with_a_fresh_state_and_the_parent_keeps_its_own() -> None:
    _dirty()
    parent = _view()
    assert parent["role"] == "task" and parent["rows"] == 5 and parent["down"] and parent["deadline_set"]
    assert in_fork(_view) == FRESH
    assert _view() == parent


def test_one_reset_forgets_everything() -> None:
    _dirty()
    process.reset()
    assert _view() == FRESH
