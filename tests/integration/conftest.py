"""Fixtures for integration tests: `stack` brings the native stack up once per session."""

from __future__ import annotations

import pytest

from tests import stackutil


@pytest.fixture(scope="session")
def stack() -> None:
    stackutil.ensure_stack()
