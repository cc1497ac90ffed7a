"""Fixtures for the fault tests: a fresh spool and unique run names per test (the stack: tests/conftest.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def run(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(dag_id, run_id), unique per test so that counts in the shared stores are this test's alone."""
    uid = uuid.uuid4().hex[:10]
    return f"rel_{request.node.name[5:25].strip('_[]')}_{uid}", f"manual__{uid}"
