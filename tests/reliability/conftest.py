"""Fixtures for the fault tests: the shared native stack, a fresh spool and unique run names per test."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests import stackutil


@pytest.fixture(scope="session")
def stack() -> None:
    stackutil.ensure_stack()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def run(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(dag_id, run_id), unique per test so that counts in the shared stores are this test's alone."""
    uid = uuid.uuid4().hex[:10]
    return f"rel_{request.node.name[5:25].strip('_[]')}_{uid}", f"manual__{uid}"
